//! Progress feedback for the commands that take a while: paging through a large batch's items
//! (a 100,000-item batch is about a hundred 1 MB pages) and waiting for a DLQ move task.

use std::io::Write;
use std::time::{Duration, Instant};

/// Where a long command reports how far it got. The commands take `&mut dyn Progress`, so
/// `main` shows progress only on a terminal and tests can record it.
pub trait Progress: Send {
    /// `done` of `total` (when known) `unit`s so far, e.g. `1000` of `Some(23000)` `items read`.
    fn update(&mut self, unit: &str, done: u64, total: Option<u64>);
    /// The work is over: remove what `update` showed.
    fn finish(&mut self);
}

/// Shows nothing: for scripts (stderr is not a terminal) and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&mut self, _unit: &str, _done: u64, _total: Option<u64>) {}
    fn finish(&mut self) {}
}

/// One line on stderr, rewritten in place (at most ten times a second) and erased by
/// [`Progress::finish`]; `main` uses it only when stderr is a terminal, so redirected output
/// and logs never contain carriage returns.
#[derive(Debug, Default)]
pub struct StderrProgress {
    shown: bool,
    last: Option<Instant>,
}

impl StderrProgress {
    /// A progress line that has shown nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Progress for StderrProgress {
    fn update(&mut self, unit: &str, done: u64, total: Option<u64>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let line = match total {
            Some(total) if total > 0 => {
                format!("{unit}: {done} of {total} ({}%)", done * 100 / total)
            }
            _ => format!("{unit}: {done}"),
        };
        let mut stderr = std::io::stderr().lock();
        // \r + "erase line": the line is rewritten in place.
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.shown = false;
        }
        self.last = None;
    }
}
