//! A tiny HTTP server and client for tests that run inside a network namespace,
//! where the in-process harness cannot reach (it lives in the test's namespace).
//!
//! ```text
//! netns-tool serve ADDR   # answers every request: 200 "served-by ADDR path=PATH"
//!                         # and, when the request carried one, "traceparent=VALUE"
//! netns-tool capture ADDR # a stand-in for the sidecar's capture listener: 200
//!                         # "captured orig-dst=IP:PORT path=PATH", the address the
//!                         # client dialled before iptables REDIRECTed it (SO_ORIGINAL_DST)
//! netns-tool get URL      # one HTTP/1.1 GET to http://IP:PORT/PATH; prints the
//!                         # status line and body; exits 1 if no response
//! ```
//!
//! std only, no runtime: it must start fast and do one obvious thing.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", addr] => serve(addr, false),
        ["capture", addr] => serve(addr, true),
        ["get", url] => get(url),
        _ => Err("usage: netns-tool serve ADDR | capture ADDR | get http://IP:PORT/PATH".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netns-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str, capture: bool) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    for stream in listener.incoming().flatten() {
        let me = if capture {
            format!("captured orig-dst={}", original_dst(&stream))
        } else {
            format!("served-by {addr}")
        };
        std::thread::spawn(move || answer(stream, me));
    }
    Ok(())
}

/// Serves keep-alive requests on one connection until the client closes.
fn answer(stream: TcpStream, me: String) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        // `get` asks `connection: close` and reads to EOF: honour it.
        let mut close = false;
        let mut header = String::new();
        let mut traceparent = None;
        while reader.read_line(&mut header).unwrap_or(0) > 2 {
            close |= header.eq_ignore_ascii_case("connection: close\r\n");
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("traceparent") {
                    traceparent = Some(value.trim().to_string());
                }
            }
            header.clear();
        }
        let mut body = format!("{me} path={path}\n");
        if let Some(value) = traceparent {
            body.push_str(&format!("traceparent={value}\n"));
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Where the connection was going before a REDIRECT (`none` if it was not
/// redirected), asked by the family of the accepting socket's local address as
/// the proxy does (an IPv4 client of a dual-stack listener has an IPv4 record).
fn original_dst(stream: &TcpStream) -> String {
    let sock = socket2::SockRef::from(stream);
    let v4 = stream
        .local_addr()
        .is_ok_and(|local| local.ip().to_canonical().is_ipv4());
    let found = if v4 {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    found
        .ok()
        .and_then(|addr| addr.as_socket())
        .map_or("none".into(), |addr| {
            SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
        })
}

fn get(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let addr: SocketAddr = authority.parse().map_err(|e| format!("{authority}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if response.is_empty() {
        return Err(format!("{addr} closed the connection without a response"));
    }
    let status = response.lines().next().unwrap_or("");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    print!("{status}\n{body}");
    Ok(())
}
