//! How a benchmark reports: min / median / max of each figure over the runs (`Spread`), written as JSON beside the
//! machine, the date and the command of the run, for benches/plots.rs to draw and summarise.

use serde_json::{Value, json};

/// min / median / max of some values.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return Spread {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Spread {
            min: sorted[0],
            median,
            max: sorted[sorted.len() - 1],
        }
    }

    pub fn json(&self) -> Value {
        json!({"min": self.min, "median": self.median, "max": self.max})
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn text(&self, digits: usize) -> String {
        format!("{:.d$} ({:.d$}–{:.d$})", self.median, self.min, self.max, d = digits)
    }
}

/// The machine, the date and the command of this run, kept beside its figures.
fn provenance() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|m| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let command: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    json!({
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "machine": format!("{cores} cores, {memory_gib:.0} GiB, {cpu}"),
        // The script that ran the benchmark says its name; the arguments are the benchmark's own.
        "command": format!("{} {}", std::env::var("BENCH_COMMAND").unwrap_or_else(|_| "cargo bench --".into()), command.join(" ")),
    })
}

/// Writes `value`, with the run's provenance, to `path` (pretty JSON), creating its directory; prints where.
pub fn write_json(path: &str, value: &Value) {
    let mut value = value.clone();
    value["provenance"] = provenance();
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent).expect("the results directory can be made");
    }
    std::fs::write(path, serde_json::to_string_pretty(&value).expect("JSON")).expect("the results file can be written");
    eprintln!("wrote {path}");
}
