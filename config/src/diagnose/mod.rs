//! Every problem of a document in one pass, each once, where it is.
//!
//! The typed parse (serde) stops at the first error. When it fails, the document
//! is read into a `serde_yaml::Value` and parsed again in rounds: each error is
//! recorded, the offending node removed (an unknown key; a bad value, so that its
//! default applies; an entry missing a required key, so that the rest of the
//! list is still checked) and the parse retried, until it succeeds. The semantic
//! checks then run on what remains. Sequence indices always name the *original*
//! document's elements, and every problem gets its line and column from
//! [`Positions`]. A valid document never comes here: it takes one typed parse.
//!
//! Unknown keys and enum values get a "did you mean" from the names serde
//! expected (the schema itself, so nothing can drift), by Jaro-Winkler similarity.

mod positions;
mod words;

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

pub use positions::{LineColumn, Positions};

use crate::{ConfigError, Problem};

/// More rounds than this and the document is hopeless; what was found is reported.
const MAX_ROUNDS: usize = 256;

/// A node removed so the parse could go on.
struct Dropped {
    /// Its path in the original document.
    path: String,
    /// A sequence element (else a mapping value).
    element: bool,
    /// A whole entry missing a required key (else one bad value).
    entry: bool,
    /// An unknown key (its parent may now miss what it meant to set).
    key: bool,
}

/// The problems found in one document so far.
pub struct Diagnosis {
    positions: Positions,
    /// Per sequence (by its original path): the original index of each element
    /// still in the working value.
    origins: HashMap<String, Vec<usize>>,
    dropped: Vec<Dropped>,
    problems: Vec<Problem>,
}

/// One step of a path, owned.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

// === impl Diagnosis ===

impl Diagnosis {
    /// Starts on `text` (read once more, for positions).
    pub fn new(text: &str) -> Self {
        Self {
            positions: Positions::of(text),
            origins: HashMap::new(),
            dropped: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Every problem found, in the order found.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Parses `value` into `T`, recording and removing every offending node;
    /// `None` when the document cannot be parsed even so.
    pub fn typed<T: DeserializeOwned>(&mut self, value: &mut Value) -> Option<T> {
        for _ in 0..MAX_ROUNDS {
            let error = match serde_path_to_error::deserialize::<_, T>(&*value) {
                Ok(parsed) => return Some(parsed),
                Err(error) => error,
            };
            let steps: Option<Vec<Step>> = error.path().iter().map(step).collect();
            let message = error.inner().to_string();
            let Some(mut steps) = steps else {
                self.push(String::new(), message, None);
                return None;
            };
            let found = words::Found::of(&message);
            if let Some(name) = found.unknown_key() {
                if !matches!(steps.last(), Some(Step::Key(k)) if k == name) {
                    steps.push(Step::Key(name.to_string()));
                }
            }
            let path = self.original(&steps);
            let shown = lookup(value, &steps).map(words::render);
            let at = self.positions.locate(&path, found.points_at_key());
            self.push(path.clone(), found.explain(&message, shown.as_deref()), at);
            if !self.remove(value, &steps) {
                return None;
            }
            let element = matches!(steps.last(), Some(Step::Index(_)));
            let (entry, key) = (found.is_missing(), found.is_unknown_key());
            self.dropped.push(Dropped {
                path,
                element,
                entry,
                key,
            });
        }
        None
    }

    /// Adds semantic problems found on the parsed remainder; their paths are
    /// below `prefix` in the document. Problems that may only follow from a
    /// removed node (a list left empty, a sibling of a dropped value) are left
    /// out: they go away or show up once the reported ones are fixed.
    pub fn semantic(&mut self, problems: Vec<Problem>, prefix: &str) {
        for problem in problems {
            if problem.path.starts_with("env ") {
                self.push(problem.path, problem.message, None);
                continue;
            }
            let path = self.original(&parse_path(&positions::join(prefix, &problem.path)));
            if self.follows_from_a_drop(&path) {
                continue;
            }
            let at = self.positions.locate(&path, true);
            self.push(path, problem.message, at);
        }
    }

    /// `problem` with the line and column of its path, which is below `prefix`.
    pub fn locate(positions: &Positions, mut problem: Problem, prefix: &str) -> Problem {
        if !problem.path.starts_with("env ") {
            let path = positions::join(prefix, &problem.path);
            if let Some((line, column)) = positions.locate(&path, true) {
                problem.line = Some(line);
                problem.column = Some(column);
            }
        }
        problem
    }

    /// Whether the document sets the node at `path` (indices as now).
    pub fn has(&self, path: &str) -> bool {
        self.positions.has(&self.original(&parse_path(path)))
    }

    fn follows_from_a_drop(&self, path: &str) -> bool {
        self.dropped.iter().any(|d| {
            let parent = positions::parent(&d.path);
            if d.key || d.element {
                // What the parent (a list, an entry) lacks now.
                path == parent
            } else if d.entry {
                path == d.path || path.starts_with(&format!("{}.", d.path))
            } else {
                path == d.path || positions::parent(path) == parent
            }
        })
    }

    fn push(&mut self, path: String, message: String, at: Option<LineColumn>) {
        let duplicate = self
            .problems
            .iter()
            .any(|p| p.path == path && p.message == message);
        if !duplicate {
            self.problems.push(Problem {
                path,
                message,
                line: at.map(|(l, _)| l),
                column: at.map(|(_, c)| c),
            });
        }
    }

    /// The path in the original document of the node at `steps` now.
    fn original(&self, steps: &[Step]) -> String {
        let mut path = String::new();
        for s in steps {
            path = match s {
                Step::Key(key) => positions::join(&path, key),
                Step::Index(i) => {
                    let index = self
                        .origins
                        .get(&path)
                        .and_then(|o| o.get(*i))
                        .copied()
                        .unwrap_or(*i);
                    format!("{path}[{index}]")
                }
            };
        }
        path
    }

    /// Removes the node at `steps` from `value`; false when there is none.
    fn remove(&mut self, value: &mut Value, steps: &[Step]) -> bool {
        let Some((last, parent_steps)) = steps.split_last() else {
            return false;
        };
        let list_path = self.original(parent_steps);
        let Some(parent) = lookup_mut(value, parent_steps) else {
            return false;
        };
        match (last, parent) {
            (Step::Key(key), Value::Mapping(map)) => {
                map.remove(key.as_str()).is_some() || map.remove(number_key(key)).is_some()
            }
            (Step::Index(i), Value::Sequence(list)) if *i < list.len() => {
                let len = list.len();
                list.remove(*i);
                let origins = self
                    .origins
                    .entry(list_path)
                    .or_insert_with(|| (0..len).collect());
                if *i < origins.len() {
                    origins.remove(*i);
                }
                true
            }
            _ => false,
        }
    }
}

/// A document that is not YAML. The typed parse reads as it goes, so its first
/// error can come from a value *before* the syntax error, usually one that
/// swallowed an over-indented line (`listen: 0.0.0.0:80` continued by `  x: y`):
/// both are reported, the value as YAML read it.
pub fn syntax(
    text: &str,
    source_name: &str,
    first: &serde_path_to_error::Error<serde_yaml::Error>,
    syntax: &serde_yaml::Error,
) -> ConfigError {
    let as_parse = |path: String, e: &serde_yaml::Error| ConfigError::yaml(source_name, path, e);
    let at = |e: &serde_yaml::Error| e.location().map(|l| (l.line(), l.column()));
    let positions = Positions::of(text);
    let in_a_scalar = positions.scalar(&first.path().to_string()).is_some();
    if at(first.inner()) == at(syntax) || !in_a_scalar {
        return as_parse(String::new(), syntax);
    }
    let mut problems = Vec::new();
    for (path, e) in [
        (first.path().to_string(), first.inner()),
        (String::new(), syntax),
    ] {
        if let ConfigError::Parse {
            line,
            column,
            path,
            mut message,
            ..
        } = as_parse(path, e)
        {
            let path = if path == "." { String::new() } else { path };
            if let Some(value) = positions.scalar(&path).filter(|v| !message.contains(*v)) {
                message = format!("{message}: {value:?}");
            }
            if message.starts_with("mapping values are not allowed") {
                message.push_str(
                    " (is this line indented deeper than the key above it? it is read as part of that key's value)",
                );
            }
            problems.push(Problem {
                path,
                message,
                line,
                column,
            });
        }
    }
    ConfigError::Invalid {
        source_name: source_name.to_string(),
        problems,
    }
}

fn step(segment: &Segment) -> Option<Step> {
    match segment {
        Segment::Seq { index } => Some(Step::Index(*index)),
        Segment::Map { key } => Some(Step::Key(key.clone())),
        Segment::Enum { .. } | Segment::Unknown => None,
    }
}

/// A numeric mapping key (`80:`) as serde saw it: as its text.
fn number_key(key: &str) -> Value {
    key.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(key))
}

/// `a.b[2].c` as steps (a key holding `.` or `[` is not told apart; such keys
/// are map keys the semantic checks never report below).
fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            steps.push(Step::Key(key.to_string()));
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => steps.push(Step::Key(format!("[{index}"))),
            }
        }
    }
    steps
}

fn lookup<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |node, s| match s {
        Step::Key(key) => node.get(key.as_str()).or_else(|| node.get(number_key(key))),
        Step::Index(i) => node.get(*i),
    })
}

fn lookup_mut<'v>(value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(value, |node, s| match s {
        Step::Key(key) => {
            let numeric = number_key(key);
            if node.get(key.as_str()).is_some() {
                node.get_mut(key.as_str())
            } else {
                node.get_mut(numeric)
            }
        }
        Step::Index(i) => node.get_mut(*i),
    })
}

#[cfg(test)]
mod tests;
