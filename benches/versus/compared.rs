//! One figure measured on both kinds of node in each run of a comparison: its spread for each, and the spread of the
//! per-run ratio swarmnode ÷ baseline (both measured in the same run, back to back), as JSON and as markdown.

use serde_json::{Value, json};

use crate::report::Spread;

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
            "name": self.name,
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
