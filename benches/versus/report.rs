//! How a comparison reports: min / median / max of each figure over the runs, for each kind of node, and of the
//! per-run ratio swarmnode ÷ baseline (both measured in the same run, back to back), as JSON a plot can be drawn
//! from and as a markdown row.

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

/// One figure measured on both kinds in each run: its spread for each and the spread of the per-run ratios.
pub struct Compared {
    pub name: &'static str,
    pub unit: &'static str,
    pub baseline: Vec<f64>,
    pub swarmnode: Vec<f64>,
}

impl Compared {
    pub fn new(name: &'static str, unit: &'static str) -> Compared {
        Compared {
            name,
            unit,
            baseline: Vec::new(),
            swarmnode: Vec::new(),
        }
    }

    pub fn ratios(&self) -> Vec<f64> {
        self.swarmnode.iter().zip(&self.baseline).map(|(s, b)| s / b).collect()
    }

    pub fn json(&self) -> Value {
        json!({
            "unit": self.unit,
            "baseline": Spread::of(&self.baseline).json(),
            "swarmnode": Spread::of(&self.swarmnode).json(),
            "ratio": Spread::of(&self.ratios()).json(),
            "runs": {"baseline": self.baseline, "swarmnode": self.swarmnode},
        })
    }

    /// `baseline → swarmnode (ratio×)`, medians, with the ratio's range.
    pub fn text(&self, digits: usize) -> String {
        let ratio = Spread::of(&self.ratios());
        format!(
            "{:.d$} → {:.d$} {} ({:.2}×, {:.2}–{:.2})",
            Spread::of(&self.baseline).median,
            Spread::of(&self.swarmnode).median,
            self.unit,
            ratio.median,
            ratio.min,
            ratio.max,
            d = digits
        )
    }
}

/// Writes `value` to `path` (pretty JSON), creating its directory; prints where.
pub fn write_json(path: &str, value: &Value) {
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent).expect("the results directory can be made");
    }
    std::fs::write(path, serde_json::to_string_pretty(value).expect("JSON")).expect("the results file can be written");
    eprintln!("wrote {path}");
}
