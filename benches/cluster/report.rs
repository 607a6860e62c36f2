//! The printed results: per section, a table of request scenarios, a table
//! comparing builds (section `compare`) and a list of figures, each line
//! printed as it is measured and all of them again at the end.

use crate::load::Stats;

struct Section {
    /// The heading of the tables.
    table: String,
    /// The heading of the figures.
    figures_title: String,
    rows: Vec<String>,
    /// The heading of the comparison table, the names of its builds, and
    /// its rows.
    compare_title: String,
    builds: Vec<String>,
    compared: Vec<String>,
    figures: Vec<String>,
}

/// The printed results.
#[derive(Default)]
pub struct Report {
    sections: Vec<Section>,
}

/// One row of a comparison: a figure of each build (None where a build
/// has none), as printed and as a number for the ratios, and the errors
/// of its requests.
pub struct Compared {
    pub name: String,
    /// Client connections; 0 for none (a figure of nodes at rest).
    pub conns: usize,
    /// What the figures are: `req/s`, `p50 ms`, `MiB`, ...
    pub unit: &'static str,
    pub shown: Vec<Option<String>>,
    pub values: Vec<Option<f64>>,
    pub errors: Vec<Option<u64>>,
}

/// Widths of the comparison table's columns: scenario, conns, unit, each
/// build, each ratio, errors.
const NAME: usize = 44;
const CELL: usize = 11;

impl Report {
    /// Starts a section: its rows go under `table`, its figures under
    /// `figures_title`.
    pub fn section(&mut self, table: &str, figures_title: &str) {
        self.sections.push(Section {
            table: table.into(),
            figures_title: figures_title.into(),
            rows: Vec::new(),
            compare_title: String::new(),
            builds: Vec::new(),
            compared: Vec::new(),
            figures: Vec::new(),
        });
    }

    fn current(&mut self) -> &mut Section {
        self.sections.last_mut().expect("a section was started")
    }

    fn line(name: &str, stats: &Stats) -> String {
        format!(
            "| {name:<44} | {:>5} | {:>9.0} | {:>7.3} | {:>7.3} | {:>7.3} | {:>6} |",
            stats.conns,
            stats.throughput(),
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.99),
            stats.quantile_ms(0.999),
            stats.errors,
        )
    }

    pub fn row(&mut self, name: &str, stats: &Stats) {
        let line = Report::line(name, stats);
        println!("{line}");
        self.current().rows.push(line);
    }

    /// Starts this section's comparison table, under `title`, of these
    /// builds; the first is the one every ratio is of. Prints the table's
    /// head.
    pub fn builds(&mut self, title: &str, names: &[String]) {
        self.current().compare_title = title.into();
        self.current().builds = names.to_vec();
        for line in compared_head(names) {
            println!("{line}");
        }
    }

    /// A row of the comparison table: each build's figure, then the first
    /// build's over each other's.
    pub fn compared(&mut self, row: &Compared) {
        let first = row.values.first().copied().flatten();
        let ratios = row
            .values
            .iter()
            .skip(1)
            .map(|&other| match (first, other) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:>CELL$}", format!("{:.3}x", a / b)),
                _ => format!("{:>CELL$}", "-"),
            });
        let errors: Vec<String> = row
            .errors
            .iter()
            .map(|e| e.map_or("-".into(), |e| e.to_string()))
            .collect();
        let mut cells = vec![
            format!("{:<NAME$}", row.name),
            match row.conns {
                0 => format!("{:>5}", "-"),
                n => format!("{n:>5}"),
            },
            format!("{:>6}", row.unit),
        ];
        cells.extend(
            row.shown
                .iter()
                .map(|v| format!("{:>CELL$}", v.as_deref().unwrap_or("-"))),
        );
        cells.extend(ratios);
        cells.push(format!("{:>8}", errors.join("/")));
        let line = format!("| {} |", cells.join(" | "));
        println!("{line}");
        self.current().compared.push(line);
    }

    pub fn figure(&mut self, line: String) {
        println!("{line}");
        self.current().figures.push(line);
    }

    pub fn print(&self) {
        for section in &self.sections {
            if !section.rows.is_empty() {
                println!("\n## {}\n", section.table);
                println!(
                    "| {:<44} | {:>5} | {:>9} | {:>7} | {:>7} | {:>7} | {:>6} |",
                    "scenario", "conns", "req/s", "p50", "p99", "p99.9", "errors"
                );
                println!(
                    "|{}|{}|{}|{}|{}|{}|{}|",
                    "-".repeat(46),
                    "-".repeat(7),
                    "-".repeat(11),
                    "-".repeat(9),
                    "-".repeat(9),
                    "-".repeat(9),
                    "-".repeat(8)
                );
                for r in &section.rows {
                    println!("{r}");
                }
            }
            if !section.compared.is_empty() {
                println!("\n## {}\n", section.compare_title);
                for line in compared_head(&section.builds) {
                    println!("{line}");
                }
                for r in &section.compared {
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

/// The head of a comparison table of these builds: a column for each, a
/// ratio of the first to each other, and the errors of each.
fn compared_head(names: &[String]) -> [String; 2] {
    let mut cells = vec![
        format!("{:<NAME$}", "scenario"),
        format!("{:>5}", "conns"),
        format!("{:>6}", "unit"),
    ];
    cells.extend(names.iter().map(|n| format!("{n:>CELL$}")));
    let first = names.first().map_or("", String::as_str);
    cells.extend(
        names
            .iter()
            .skip(1)
            .map(|n| format!("{:>CELL$}", format!("{first}/{n}"))),
    );
    cells.push(format!("{:>8}", "errors"));
    let rule: Vec<String> = cells.iter().map(|c| "-".repeat(c.len() + 2)).collect();
    [
        format!("| {} |", cells.join(" | ")),
        format!("|{}|", rule.join("|")),
    ]
}

/// How a target is reported: met or not.
pub fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}
