//! The results table: one row per case, one column per check, then the reasons
//! for every failed cell and the observed ids of every case that failed.
//!
//! A check never stops at its first failure: it records every broken expectation
//! ([`Verdict::expect`]), so one run shows everything that is wrong, and the
//! table is the same whether the run passes or fails (it goes in release notes).

use std::fmt;

use super::observe::Trip;

/// The outcome of one check for one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Every expectation held.
    Pass,
    /// These expectations did not.
    Fail(Vec<String>),
    /// The check does not apply at this stage.
    NotApplicable,
}

/// Collects the broken expectations of one check.
#[derive(Debug, Default)]
#[must_use = "a verdict is reported through `into_cell`"]
pub struct Verdict {
    failures: Vec<String>,
}

/// A stage's results.
#[derive(Debug)]
pub struct Report {
    title: String,
    /// Column name and one line on what it checks.
    columns: Vec<(&'static str, &'static str)>,
    notes: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    case: String,
    cells: Vec<Cell>,
    trip: Trip,
}

// === impl Verdict ===

impl Verdict {
    /// Records `failure()` unless `holds`.
    pub fn expect(&mut self, holds: bool, failure: impl FnOnce() -> String) {
        if !holds {
            self.failures.push(failure());
        }
    }

    /// Records `failure` unconditionally.
    pub fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }

    /// Pass when nothing was recorded.
    pub fn into_cell(self) -> Cell {
        if self.failures.is_empty() {
            Cell::Pass
        } else {
            Cell::Fail(self.failures)
        }
    }
}

// === impl Report ===

impl Report {
    /// An empty table titled `title` with these columns.
    pub fn new(title: impl Into<String>, columns: &[(&'static str, &'static str)]) -> Self {
        Self {
            title: title.into(),
            columns: columns.to_vec(),
            notes: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a line printed under the title (what the libraries reported).
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Adds a case's row: one cell per column, in order, and the trip whose ids
    /// are printed when a cell failed.
    pub fn row(&mut self, case: &str, cells: Vec<Cell>, trip: Trip) {
        assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(Row {
            case: case.to_string(),
            cells,
            trip,
        });
    }

    /// Whether every applicable cell passed.
    pub fn passed(&self) -> bool {
        self.rows
            .iter()
            .all(|row| row.cells.iter().all(|c| !matches!(c, Cell::Fail(_))))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.case.len())
            .chain([4])
            .max()
            .unwrap_or(4);
        writeln!(f, "\n{}", self.title)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        write!(f, "| {:width$} |", "case")?;
        for (name, _) in &self.columns {
            write!(f, " {name:4} |")?;
        }
        write!(f, "\n|{}|", "-".repeat(width + 2))?;
        for _ in &self.columns {
            write!(f, "------|")?;
        }
        writeln!(f)?;
        for row in &self.rows {
            write!(f, "| {:width$} |", row.case)?;
            for cell in &row.cells {
                let mark = match cell {
                    Cell::Pass => "pass",
                    Cell::Fail(_) => "FAIL",
                    Cell::NotApplicable => "-",
                };
                write!(f, " {mark:4} |")?;
            }
            writeln!(f)?;
        }
        for (name, meaning) in &self.columns {
            writeln!(f, "  {name}: {meaning}")?;
        }
        for row in self
            .rows
            .iter()
            .filter(|r| r.cells.iter().any(|c| matches!(c, Cell::Fail(_))))
        {
            writeln!(f, "\n{} failed:", row.case)?;
            for ((name, _), cell) in self.columns.iter().zip(&row.cells) {
                if let Cell::Fail(reasons) = cell {
                    for reason in reasons {
                        writeln!(f, "  {name}: {reason}")?;
                    }
                }
            }
            write!(f, "  observed:\n{}", row.trip)?;
        }
        Ok(())
    }
}
