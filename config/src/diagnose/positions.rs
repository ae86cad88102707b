//! Where every key and value of a YAML document is: a map from a node's path
//! (`outbound.routes[0].target`, as `serde_path_to_error` writes paths) to the
//! line and column of its key and of its value.
//!
//! serde_yaml's `Value` carries no positions and its event stream is private, so
//! the text is read a second time with `saphyr-parser`, whose events carry spans.
//! This only happens on the slow path (a document that did not parse into the
//! schema, or `check-config`), never on a valid reload.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

/// A 1-based line and column.
pub type LineColumn = (usize, usize);

/// Where one node is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    /// Its key, for a mapping value.
    key: Option<LineColumn>,
    /// The value itself.
    value: LineColumn,
    /// A scalar's text (after YAML folded it).
    text: Option<String>,
}

/// Every node's position, by path.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, Position>);

enum Frame {
    Map {
        path: String,
        key: Option<(String, LineColumn)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn at(span: &Span) -> LineColumn {
    (span.start.line(), span.start.col() + 1)
}

/// `parent.key` (or `key` at the top).
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

// === impl Positions ===

impl Positions {
    /// Reads `text`'s first document; a syntax error ends the map where it is
    /// (serde_yaml reports the error itself).
    pub fn of(text: &str) -> Self {
        let mut map = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for next in Parser::new_from_str(text) {
            let Ok((event, span)) = next else { break };
            match event {
                Event::Scalar(ref value, ..) => {
                    if let Some(Frame::Map {
                        key: key @ None, ..
                    }) = stack.last_mut()
                    {
                        *key = Some((value.to_string(), at(&span)));
                    } else if let Some((path, mut position)) = Self::node(&mut stack, &span) {
                        position.text = Some(value.to_string());
                        map.insert(path, position);
                    }
                }
                Event::Alias(_) => {
                    if let Some((path, position)) = Self::node(&mut stack, &span) {
                        map.insert(path, position);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = match Self::node(&mut stack, &span) {
                        Some((path, position)) => {
                            map.insert(path.clone(), position);
                            path
                        }
                        None => String::new(),
                    };
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::DocumentEnd => break,
                _ => {}
            }
        }
        Self(map)
    }

    /// The path and position of a node starting at `span`, advancing the
    /// enclosing frame; `None` at the top (the root has the empty path).
    fn node(stack: &mut [Frame], span: &Span) -> Option<(String, Position)> {
        match stack.last_mut() {
            None => Some((
                String::new(),
                Position {
                    key: None,
                    value: at(span),
                    text: None,
                },
            )),
            Some(Frame::Map { path, key }) => {
                // A non-scalar key (rare, never in our schemas) has no path.
                let (name, key_at) = key.take()?;
                Some((
                    join(path, &name),
                    Position {
                        key: Some(key_at),
                        value: at(span),
                        text: None,
                    },
                ))
            }
            Some(Frame::Seq { path, next }) => {
                let path = format!("{path}[{next}]");
                *next += 1;
                Some((
                    path,
                    Position {
                        key: None,
                        value: at(span),
                        text: None,
                    },
                ))
            }
        }
    }

    /// Where the node at `path` is (its key when `key` and it has one), else
    /// where its nearest ancestor that is in the document is (`None` when only
    /// the whole document is).
    pub fn locate(&self, path: &str, key: bool) -> Option<LineColumn> {
        let mut path = path;
        loop {
            if path.is_empty() {
                // The whole document: no better place than none.
                return None;
            }
            if let Some(p) = self.0.get(path) {
                return Some(if key {
                    p.key.unwrap_or(p.value)
                } else {
                    p.value
                });
            }
            path = parent(path);
        }
    }
}

impl Positions {
    /// Whether the document has a node at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// The text of the scalar at `path`, as YAML read it.
    pub fn scalar(&self, path: &str) -> Option<&str> {
        self.0.get(path)?.text.as_deref()
    }
}

/// The path one level up: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
pub fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_sequence_elements_have_positions() {
        let text = "inbound:\n  listen: 1.2.3.4:5\noutbound:\n  routes:\n  - host: a\n    target: b:1\n  - {host: c, target: d:2}\n";
        let p = Positions::of(text);
        assert_eq!(p.locate("inbound.listen", true), Some((2, 3)));
        assert_eq!(p.locate("inbound.listen", false), Some((2, 11)));
        assert_eq!(p.locate("outbound.routes[0].target", true), Some((6, 5)));
        assert_eq!(p.locate("outbound.routes[1].target", false), Some((7, 23)));
        assert_eq!(p.locate("outbound.routes[1]", false), Some((7, 5)));
        // Not in the document: the nearest ancestor that is.
        assert_eq!(p.locate("outbound.routes[1].authority", true), Some((7, 5)));
        assert_eq!(p.locate("limits.backlog", true), None);
    }
}
