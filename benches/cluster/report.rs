//! The printed results: one table of request scenarios and one list of
//! figures per section, each line printed as it is measured and all of them
//! again at the end. Every throughput is also given as a ratio to the
//! baseline's GET throughput, measured once per run by the first section
//! that needs it.

use crate::load::Stats;
use crate::{baseline, Mode};

struct Section {
    /// The heading of the table.
    table: String,
    /// The heading of the figures.
    figures_title: String,
    rows: Vec<String>,
    figures: Vec<String>,
}

/// The printed results.
#[derive(Default)]
pub struct Report {
    /// The baseline's GET throughput and its row, once measured.
    baseline: Option<(f64, String)>,
    sections: Vec<Section>,
}

impl Report {
    /// Starts a section: its rows go under `table`, its figures under
    /// `figures_title`.
    pub fn section(&mut self, table: &str, figures_title: &str) {
        self.sections.push(Section {
            table: table.into(),
            figures_title: figures_title.into(),
            rows: Vec::new(),
            figures: Vec::new(),
        });
    }

    fn current(&mut self) -> &mut Section {
        self.sections.last_mut().expect("a section was started")
    }

    /// Measures the baseline and prints its row, unless this run already has.
    pub fn baseline(&mut self, mode: Mode) {
        if self.baseline.is_some() {
            return;
        }
        let stats = baseline::measure(mode);
        let line = self.line("baseline GET (bare tiny_http)", &stats, stats.throughput());
        println!("{line}");
        self.baseline = Some((stats.throughput(), line));
    }

    fn line(&self, name: &str, stats: &Stats, baseline: f64) -> String {
        let ratio = if baseline > 0.0 {
            stats.throughput() / baseline
        } else {
            f64::NAN
        };
        format!(
            "| {name:<38} | {:>5} | {:>9.0} | {:>6.2}x | {:>7.3} | {:>7.3} | {:>7.3} | {:>6} |",
            stats.conns,
            stats.throughput(),
            ratio,
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.99),
            stats.quantile_ms(0.999),
            stats.errors,
        )
    }

    pub fn row(&mut self, name: &str, stats: &Stats) {
        let baseline = self.baseline.as_ref().map_or(0.0, |(b, _)| *b);
        let line = self.line(name, stats, baseline);
        println!("{line}");
        self.current().rows.push(line);
    }

    pub fn figure(&mut self, line: String) {
        println!("{line}");
        self.current().figures.push(line);
    }

    pub fn print(&self) {
        for section in &self.sections {
            if let Some((_, first)) = self.baseline.as_ref().filter(|_| !section.rows.is_empty()) {
                println!("\n## {}\n", section.table);
                println!(
                    "| {:<38} | {:>5} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7} | {:>6} |",
                    "scenario", "conns", "req/s", "ratio", "p50", "p99", "p99.9", "errors"
                );
                println!(
                    "|{}|{}|{}|{}|{}|{}|{}|{}|",
                    "-".repeat(40),
                    "-".repeat(7),
                    "-".repeat(11),
                    "-".repeat(9),
                    "-".repeat(9),
                    "-".repeat(9),
                    "-".repeat(9),
                    "-".repeat(8)
                );
                println!("{first}");
                for r in &section.rows {
                    println!("{r}");
                }
            }
            if !section.figures.is_empty() {
                println!("\n## {}\n", section.figures_title);
                for f in &section.figures {
                    println!("- {f}");
                }
            }
        }
    }
}

/// How a target is reported: met or not.
pub fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}
