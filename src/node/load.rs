//! The load a node reports in its member record: the machine's busy CPU share since the previous sample (from
//! `/proc/stat`) and the process's resident memory (from `/proc/self/statm`). Where those files cannot be read (not
//! Linux, a locked-down container) the figures are zero rather than an error: load is advisory.

/// Busy and total CPU time of the whole machine, in clock ticks, as `/proc/stat`'s first line gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Remembers the previous CPU sample, so each reading is the share over the interval between two.
#[derive(Debug, Default)]
pub struct LoadSampler {
    previous: Option<CpuTimes>,
}

impl LoadSampler {
    /// The busy share of the machine's CPU since the previous call (0 on the first), from 0 to 1.
    pub fn cpu(&mut self) -> f64 {
        let Some(now) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_stat(&text))
        else {
            return 0.0;
        };
        let share = self.previous.map_or(0.0, |before| busy_share(before, now));
        self.previous = Some(now);
        share
    }
}

/// The process's resident memory in bytes, 0 if unknown.
pub fn resident_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages.saturating_mul(page))
}

/// The first `cpu` line: user nice system idle iowait irq softirq steal …; idle and iowait are the idle time.
fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

fn busy_share(before: CpuTimes, now: CpuTimes) -> f64 {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = now.busy.saturating_sub(before.busy);
    (busy as f64 / total as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_share_is_measured_between_two_samples() {
        let before = parse_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let now = parse_stat("cpu  250 0 150 900 100 0 0 0 0 0\n").unwrap();
        assert_eq!(before, CpuTimes { busy: 200, total: 1000 });
        assert!((busy_share(before, now) - 0.5).abs() < 1e-9);
        assert_eq!(busy_share(now, now), 0.0);
        assert_eq!(parse_stat("intr 5\n"), None);
    }

    #[test]
    fn this_machine_reports_some_memory() {
        let mut sampler = LoadSampler::default();
        assert_eq!(sampler.cpu(), 0.0);
        assert!((0.0..=1.0).contains(&sampler.cpu()));
        assert!(resident_bytes() > 0);
    }
}
