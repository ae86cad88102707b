//! A tiny HTTP server and client for tests that run inside a network namespace,
//! where the in-process harness cannot reach (it lives in the test's namespace).
//!
//! ```text
//! netns-tool serve ADDR   # answers every request: 200 "served-by ADDR path=PATH"
//!                         # and, when the request carried one, "traceparent=VALUE"
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
        ["serve", addr] => serve(addr),
        ["get", url] => get(url),
        _ => Err("usage: netns-tool serve ADDR | get http://IP:PORT/PATH".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netns-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    for stream in listener.incoming().flatten() {
        let me = addr.to_string();
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
        let mut header = String::new();
        let mut traceparent = None;
        while reader.read_line(&mut header).unwrap_or(0) > 2 {
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("traceparent") {
                    traceparent = Some(value.trim().to_string());
                }
            }
            header.clear();
        }
        let mut body = format!("served-by {me} path={path}\n");
        if let Some(value) = traceparent {
            body.push_str(&format!("traceparent={value}\n"));
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
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
