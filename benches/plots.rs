//! Plots and the summary of docs/benchmarks.md, drawn from the JSON results the benchmarks write (versus, link,
//! sim): `cargo bench --bench plots -- DIR [SUMMARY.md]` writes DIR/*.png (plotters, bitmap backend, DejaVu Sans —
//! Debian's fonts-dejavu-core) and replaces the part of SUMMARY.md between `<!-- summary:begin -->` and
//! `<!-- summary:end -->` with one table per result file: each figure's median (min–max) for the baseline and
//! swarmnode and their ratio, with the machine, date and command of its run. Files that are absent are skipped.

use std::path::{Path, PathBuf};

use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::*,
};
use serde_json::Value;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const BASELINE: RGBColor = RGBColor(90, 90, 90);
const SWARMNODE: RGBColor = RGBColor(214, 39, 40);
const BATCHED: RGBColor = RGBColor(31, 119, 180);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
/// A line series: its name, its colour, and its points, one list per run.
type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Runs<'a> = (&'a str, RGBColor, Vec<Vec<(f64, f64)>>);

fn read(dir: &Path, name: &str) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
}

fn median(value: &Value) -> f64 {
    value["median"].as_f64().unwrap_or(f64::NAN)
}

/// `median (min–max)` of a spread.
fn spread(value: &Value, digits: usize) -> String {
    let f = |k: &str| value[k].as_f64().unwrap_or(f64::NAN);
    format!("{:.d$} ({:.d$}–{:.d$})", f("median"), f("min"), f("max"), d = digits)
}

/// A chart on a blank 900×500 canvas, with the plots' caption and margins, over x × y.
fn canvas<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>> {
    root.fill(&WHITE)?;
    Ok(ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?)
}

/// The legend in the upper left, then the picture written out.
fn finish<'a, 'b>(mut chart: Chart<'a, 'b>, root: &'a DrawingArea<BitMapBackend<'b>, Shift>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Grouped bars: one group per label, one bar per series, with whiskers from min to max.
fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    labels: &[String],
    series: &[(&str, RGBColor, Vec<&Value>)],
) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    let top = series
        .iter()
        .flat_map(|(_, _, values)| values.iter().map(|v| v["max"].as_f64().unwrap_or(0.0)))
        .fold(0.0, f64::max)
        * 1.15;
    let mut chart = canvas(&root, title, 0.0..labels.len() as f64, 0.0..top.max(1e-9))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let index = (*x - 0.5).round();
            if (x - 0.5 - index).abs() < 1e-6 && index >= 0.0 {
                labels.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (s, (name, color, values)) in series.iter().enumerate() {
        let color = *color;
        let rects = values.iter().enumerate().map(move |(group, v)| {
            let x0 = group as f64 + 0.1 + s as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, median(v))], color.filled())
        });
        chart
            .draw_series(rects)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let whiskers = values.iter().enumerate().map(move |(group, v)| {
            let x = group as f64 + 0.1 + s as f64 * width + width * 0.45;
            PathElement::new(
                vec![
                    (x, v["min"].as_f64().unwrap_or(0.0)),
                    (x, v["max"].as_f64().unwrap_or(0.0)),
                ],
                BLACK.stroke_width(2),
            )
        });
        chart.draw_series(whiskers)?;
    }
    finish(chart, &root)
}

/// Lines of (x, y) points, one per run and kind.
fn lines(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Runs]) -> Result<()> {
    let points = series.iter().flat_map(|(_, _, runs)| runs.iter().flatten());
    let (x_max, y_max) = points.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    let mut chart = canvas(&root, title, 0.0..x_max.max(1.0) * 1.05, 0.0..y_max.max(1.0) * 1.15)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
    for (name, color, runs) in series {
        let color = *color;
        for (i, run) in runs.iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
            if i == 0 {
                drawn
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
        }
    }
    finish(chart, &root)
}

fn provenance(value: &Value) -> String {
    let p = &value["provenance"];
    format!(
        "_{} · {} · `{}`_",
        p["date"].as_str().unwrap_or("?"),
        p["machine"].as_str().unwrap_or("?"),
        p["command"].as_str().unwrap_or("?")
    )
}

/// The gossip comparison at each N: plots and a table.
fn gossip(dir: &Path, out: &mut String) -> Result<()> {
    let runs: Vec<Value> = [2, 3, 10, 20, 50]
        .iter()
        .filter_map(|n| read(dir, &format!("gossip-{n}.json")))
        .collect();
    if runs.is_empty() {
        return Ok(());
    }
    let labels: Vec<String> = runs.iter().map(|r| format!("N = {}", r["nodes"])).collect();
    let kinds = |figure: &str| -> Vec<(&str, RGBColor, Vec<&Value>)> {
        vec![
            (
                "baseline",
                BASELINE,
                runs.iter().map(|r| &r["figures"][figure]["baseline"]).collect(),
            ),
            (
                "swarmnode",
                SWARMNODE,
                runs.iter().map(|r| &r["figures"][figure]["swarmnode"]).collect(),
            ),
        ]
    };
    let ratios: Vec<(&str, RGBColor, Vec<&Value>)> = vec![
        (
            "p50 latency",
            SWARMNODE,
            runs.iter().map(|r| &r["figures"]["p50_ms"]["ratio"]).collect(),
        ),
        (
            "p99 latency",
            BATCHED,
            runs.iter().map(|r| &r["figures"]["p99_ms"]["ratio"]).collect(),
        ),
        (
            "CPU per message",
            BASELINE,
            runs.iter()
                .map(|r| &r["figures"]["cpu_ms_per_message"]["ratio"])
                .collect(),
        ),
    ];
    bars(
        &dir.join("gossip-ratios.png"),
        "swarmnode ÷ bare rust-libp2p, same run (1.0 = as fast)",
        "ratio",
        &labels,
        &ratios,
    )?;
    bars(
        &dir.join("gossip-p50.png"),
        "Gossip latency p50 (publish → deliver)",
        "ms",
        &labels,
        &kinds("p50_ms"),
    )?;
    bars(
        &dir.join("gossip-p99.png"),
        "Gossip latency p99",
        "ms",
        &labels,
        &kinds("p99_ms"),
    )?;
    bars(
        &dir.join("gossip-cpu.png"),
        "CPU per delivered message (all nodes)",
        "ms",
        &labels,
        &kinds("cpu_ms_per_message"),
    )?;
    out.push_str("### Gossip: swarmnode against the bare rust-libp2p node\n\n");
    out.push_str("| N | load | figure | baseline | swarmnode | ratio |\n|---|---|---|---|---|---|\n");
    for r in &runs {
        let load = format!("{} × {} B @ {}/s", r["messages"], r["bytes"], r["rate"]);
        for (key, name, digits) in [
            ("p50_ms", "p50 latency, ms", 1),
            ("p99_ms", "p99 latency, ms", 1),
            ("cpu_ms_per_message", "CPU per delivered message, ms", 3),
            ("idle_cpu_percent_per_node", "idle CPU per node, % of a core", 2),
            ("rss_mib_per_node", "RSS per node, MiB", 1),
            ("delivered", "delivered, share", 3),
        ] {
            let f = &r["figures"][key];
            out.push_str(&format!(
                "| {} | {load} | {name} | {} | {} | {}× |\n",
                r["nodes"],
                spread(&f["baseline"], digits),
                spread(&f["swarmnode"], digits),
                spread(&f["ratio"], 2)
            ));
        }
    }
    out.push('\n');
    for r in &runs {
        out.push_str(&format!("N = {}: {}  \n", r["nodes"], provenance(r)));
    }
    out.push_str(
        "\n![ratios](benchmarks/gossip-ratios.png)\n![p50](benchmarks/gossip-p50.png)\n![p99](benchmarks/gossip-p99.png)\n![CPU](benchmarks/gossip-cpu.png)\n\n",
    );
    Ok(())
}

fn memory(dir: &Path, out: &mut String) -> Result<()> {
    let Some(m) = read(dir, "memory.json") else {
        return Ok(());
    };
    let samples = |kind: &str| -> Vec<Vec<(f64, f64)>> {
        m["samples"][kind]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .map(|run| {
                        run.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    lines(
        &dir.join("memory.png"),
        "Resident memory while peers connect",
        "connected peers",
        "RSS, MiB",
        &[
            ("baseline", BASELINE, samples("baseline")),
            ("swarmnode", SWARMNODE, samples("swarmnode")),
        ],
    )?;
    out.push_str(&format!(
        "### Memory: one node while {} bare peers connect\n\n",
        m["peers"]
    ));
    out.push_str("| figure | baseline | swarmnode | ratio |\n|---|---|---|---|\n");
    for (key, name) in [
        ("idle_mib", "idle RSS, MiB"),
        ("idle_anon_mib", "idle RSS, anonymous only, MiB"),
        ("settled_mib", "RSS with the peers, MiB"),
        ("per_connection_kib", "per connection, KiB"),
    ] {
        let f = &m["figures"][key];
        out.push_str(&format!(
            "| {name} | {} | {} | {}× |\n",
            spread(&f["baseline"], 1),
            spread(&f["swarmnode"], 1),
            spread(&f["ratio"], 2)
        ));
    }
    out.push_str(&format!("\n{}\n\n![memory](benchmarks/memory.png)\n\n", provenance(&m)));
    Ok(())
}

fn throughput(dir: &Path, out: &mut String) -> Result<()> {
    let results: Vec<Value> = [1024, 65536]
        .iter()
        .filter_map(|b| read(dir, &format!("throughput-{b}.json")))
        .collect();
    if results.is_empty() {
        return Ok(());
    }
    let labels: Vec<String> = results.iter().map(|r| format!("{} B", r["bytes"])).collect();
    let configurations = [
        ("baseline", BASELINE),
        ("swarmnode", SWARMNODE),
        ("swarmnode --batch-window", BATCHED),
    ];
    let series: Vec<(&str, RGBColor, Vec<&Value>)> = configurations
        .iter()
        .map(|(name, color)| {
            (
                *name,
                *color,
                results.iter().map(|r| &r["figures"][*name]["sustained_rate"]).collect(),
            )
        })
        .collect();
    bars(
        &dir.join("throughput.png"),
        "Sustained gossip rate (every message to every node, p99 ≤ 1 s)",
        "messages / s",
        &labels,
        &series,
    )?;
    out.push_str("### Throughput: the highest sustained publish rate\n\n| N | size | node | sustained msg/s | ratio to the baseline |\n|---|---|---|---|---|\n");
    for r in &results {
        for (name, _) in configurations {
            let f = &r["figures"][name];
            out.push_str(&format!(
                "| {} | {} B | {name} | {} | {}× |\n",
                r["nodes"],
                r["bytes"],
                spread(&f["sustained_rate"], 0),
                spread(&f["ratio"], 2)
            ));
        }
    }
    out.push('\n');
    for r in &results {
        out.push_str(&format!("{} B: {}  \n", r["bytes"], provenance(r)));
    }
    out.push_str("\n![throughput](benchmarks/throughput.png)\n\n");
    Ok(())
}

fn link(dir: &Path, out: &mut String) -> Result<()> {
    let Some(l) = read(dir, "link.json") else { return Ok(()) };
    let names: Vec<String> = l["transports"]
        .as_object()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let mut labels = names.clone();
    labels.push("iperf3 (TCP)".into());
    labels.push("chacha20-poly1305".into());
    let mut download: Vec<&Value> = names.iter().map(|n| &l["transports"][n]["download_gbit_s"]).collect();
    download.push(&l["ceilings"]["iperf3_gbit_s"]);
    download.push(&l["ceilings"]["chacha20_poly1305_gbit_s"]);
    bars(
        &dir.join("link.png"),
        "Link throughput on loopback (/perf/1.0.0 download) and its ceilings",
        "Gbit/s",
        &labels,
        &[("Gbit/s", SWARMNODE, download)],
    )?;
    out.push_str(&format!(
        "### Link throughput: `/perf/1.0.0`, {} each way\n\n",
        l["size"].as_str().unwrap_or("?")
    ));
    out.push_str("| transport | upload Gbit/s | download Gbit/s | first byte, ms | share of iperf3 | share of the cipher | peak RSS of a node, MiB |\n|---|---|---|---|---|---|---|\n");
    for n in &names {
        let t = &l["transports"][n];
        out.push_str(&format!(
            "| {n} | {} | {} | {} | {:.0} % | {:.0} % | {} |\n",
            spread(&t["upload_gbit_s"], 2),
            spread(&t["download_gbit_s"], 2),
            spread(&t["first_byte_ms"], 1),
            median(&t["download_share_of_iperf3"]) * 100.0,
            median(&t["download_share_of_cipher"]) * 100.0,
            spread(&t["peak_rss_mib"], 1)
        ));
    }
    out.push_str(&format!(
        "\nCeilings in the same run: iperf3 one TCP stream over loopback {} Gbit/s; `openssl speed -evp chacha20-poly1305` on one core {} Gbit/s.\n\n{}\n\n![link](benchmarks/link.png)\n\n",
        spread(&l["ceilings"]["iperf3_gbit_s"], 1),
        spread(&l["ceilings"]["chacha20_poly1305_gbit_s"], 1),
        provenance(&l)
    ));
    Ok(())
}

/// Replaces the marked part of `summary` with `text`.
fn splice(summary: &Path, text: &str) -> Result<()> {
    const BEGIN: &str = "<!-- summary:begin -->";
    const END: &str = "<!-- summary:end -->";
    let old = std::fs::read_to_string(summary).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(begin), Some(end)) if begin < end => format!("{}{BEGIN}\n{text}{}", &old[..begin], &old[end..]),
        _ => format!("{old}\n{BEGIN}\n{text}{END}\n"),
    };
    std::fs::write(summary, new)?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir = PathBuf::from(args.first().map_or("docs/benchmarks", String::as_str));
    let summary = PathBuf::from(args.get(1).map_or("docs/benchmarks.md", String::as_str));
    let font: &'static [u8] = Box::leak(
        std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{FONT} is not a font"))?;
    let mut text = String::from(
        "\n_Generated by `scripts/bench.sh` from the JSON in docs/benchmarks/; every ratio is swarmnode ÷ the bare rust-libp2p node (benches/baseline) measured in the same run, interleaved._\n\n",
    );
    gossip(&dir, &mut text)?;
    memory(&dir, &mut text)?;
    throughput(&dir, &mut text)?;
    link(&dir, &mut text)?;
    splice(&summary, &text)?;
    eprintln!("plots in {}, summary in {}", dir.display(), summary.display());
    Ok(())
}
