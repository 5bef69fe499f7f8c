//! Tables, targets and the chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;

use crate::phases::{Compaction, Lag, Reopen, RssReport};
use crate::stats::Run;
use crate::workload::size_name;

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub filesystem: String,
    pub work_dir: String,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    pub fn probe(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo.lines().next().unwrap_or("").split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
        let d = dir.to_string_lossy().to_string();
        let findmnt = sh("findmnt", &["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", &d]);
        let df = sh("df", &["-T", "-h", &d]);
        let df_line = df.lines().nth(1).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory,
            kernel: sh("uname", &["-r"]),
            filesystem: format!("{findmnt} (df -T: {df_line})"),
            work_dir: d,
        }
    }
}

/// One target, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    /// Measured over the threshold, in the direction where higher is better (>= 1 is met);
    /// `None` when the phase did not run.
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    pub primary_payload: usize,
    pub seconds_per_config: f64,
    pub runs: Vec<Run>,
    pub compaction: Vec<Compaction>,
    pub lag: Option<Lag>,
    pub reopen: Vec<Reopen>,
    pub rss: Vec<RssReport>,
    pub targets: Vec<Target>,
    pub total_seconds: f64,
}

impl Results {
    pub fn run(&self, system: &str, writers: usize, payload: usize) -> Option<&Run> {
        self.runs.iter().find(|r| r.system == system && r.writers == writers && r.payload == payload)
    }

    /// Computes the targets from what was measured (at the primary payload).
    pub fn compute_targets(&mut self) {
        let p = self.primary_payload;
        let pn = size_name(p);
        let mut t = Vec::new();
        let raw = self.run("raw write+fdatasync", 1, p).cloned();
        let one = self.run("tidelog store", 1, p).cloned();
        let sixteen = self.run("tidelog store", 16, p).cloned();
        let sql16 = self.run("sqlite FULL+FTS", 16, p).cloned();
        let mut add = |target: String, measured: String, ratio: Option<f64>| {
            t.push(Target { target, measured, ratio, met: ratio.map(|r| r >= 1.0) });
        };
        match (&one, &raw) {
            (Some(o), Some(r)) => {
                let x = o.msgs_per_sec / r.msgs_per_sec;
                add(
                    format!("one writer >= 0.8x raw write+fdatasync loop ({pn})"),
                    format!("{:.0} vs {:.0} msg/s = {x:.2}x", o.msgs_per_sec, r.msgs_per_sec),
                    Some(x / 0.8),
                )
            }
            _ => add("one writer >= 0.8x raw loop".into(), "not run".into(), None),
        }
        match (&sixteen, &one) {
            (Some(s), Some(o)) => {
                let x = s.msgs_per_sec / o.msgs_per_sec;
                add(
                    format!("16 writers >= 8x one writer ({pn})"),
                    format!("{:.0} vs {:.0} msg/s = {x:.1}x", s.msgs_per_sec, o.msgs_per_sec),
                    Some(x / 8.0),
                )
            }
            _ => add("16 writers >= 8x one writer".into(), "not run".into(), None),
        }
        match (&sixteen, &sql16) {
            (Some(s), Some(q)) => {
                let x = s.msgs_per_sec / q.msgs_per_sec;
                add(
                    format!("16 writers >= 50x SQLite FULL+FTS triggers at 16 writers ({pn})"),
                    format!("{:.0} vs {:.0} msg/s = {x:.1}x", s.msgs_per_sec, q.msgs_per_sec),
                    Some(x / 50.0),
                )
            }
            _ => add("16 writers >= 50x SQLite FULL+FTS".into(), "not run".into(), None),
        }
        match (&sixteen, &raw) {
            (Some(s), Some(r)) => {
                let x = f64::from(s.p99_us) / f64::from(r.p99_us.max(1));
                add(
                    format!("p99 commit latency at 16 writers <= 4x raw loop p99 ({pn})"),
                    format!("{} us vs {} us = {x:.1}x", s.p99_us, r.p99_us),
                    Some(4.0 / x.max(1e-9)),
                )
            }
            _ => add("p99 at 16 writers <= 4x raw p99".into(), "not run".into(), None),
        }
        match self.compaction.iter().find(|c| c.payload == p) {
            Some(c) => {
                let x = c.tidelog_msgs_per_sec / c.sqlite_one_tx_msgs_per_sec;
                let y = c.tidelog_msgs_per_sec / c.sqlite_per_tx_msgs_per_sec;
                add(
                    format!("compactor >= 2x SQLite trigger-per-row FTS insert rate ({pn})"),
                    format!(
                        "{:.0} vs {:.0} msg/s (one transaction) = {x:.2}x; vs {:.0} msg/s (transaction per row) = {y:.0}x",
                        c.tidelog_msgs_per_sec, c.sqlite_one_tx_msgs_per_sec, c.sqlite_per_tx_msgs_per_sec
                    ),
                    Some(x / 2.0),
                )
            }
            None => add("compactor >= 2x SQLite trigger path".into(), "not run".into(), None),
        }
        let large = self.reopen.iter().find(|r| r.label == "1 GB");
        let small = self.reopen.iter().find(|r| r.label == "100 MB");
        match large {
            Some(l) => add(
                "reopen after clean close of a 1 GB journal < 100 ms".into(),
                format!(
                    "{:.1} ms warm cache{}",
                    l.clean_ms,
                    l.clean_cold_ms.map(|c| format!(" ({c:.1} ms after dropping the page cache)")).unwrap_or_default()
                ),
                Some(100.0 / l.clean_ms.max(1e-9)),
            ),
            None => {
                add("reopen after clean close of 1 GB < 100 ms".into(), "not run (--quick / --no-large)".into(), None)
            }
        }
        match (large, small) {
            (Some(l), Some(s)) => {
                let x = l.kill_ms / s.kill_ms.max(1e-9);
                add(
                    "reopen after kill proportional to the active segment: 1 GB <= 1.5x 100 MB (same active segment)"
                        .into(),
                    format!(
                        "{:.1} ms vs {:.1} ms = {x:.2}x (active segment {:.0} MB vs {:.0} MB)",
                        l.kill_ms,
                        s.kill_ms,
                        l.active_bytes as f64 / 1e6,
                        s.active_bytes as f64 / 1e6
                    ),
                    Some(1.5 / x.max(1e-9)),
                )
            }
            _ => add("reopen after kill: 1 GB similar to 100 MB".into(), "not run (--quick / --no-large)".into(), None),
        }
        match self.reopen.iter().rev().find(|r| r.verify_mb_per_sec.is_some()) {
            Some(r) => {
                let v = r.verify_mb_per_sec.unwrap_or(0.0);
                add(
                    format!("verify >= 1 GB/s ({} journal)", r.label),
                    format!(
                        "{v:.0} MB/s warm cache{}",
                        r.verify_cold_mb_per_sec
                            .map(|c| format!(" ({c:.0} MB/s with the page cache dropped)"))
                            .unwrap_or_default()
                    ),
                    Some(v / 1000.0),
                )
            }
            None => add("verify >= 1 GB/s".into(), "not run".into(), None),
        }
        for r in &self.rss {
            let mib = r.vm_hwm_kib as f64 / 1024.0;
            add(
                format!(
                    "peak RSS < 64 MiB while {} {} messages",
                    if r.phase == "append" { "appending" } else { "compacting" },
                    r.messages
                ),
                format!(
                    "{mib:.1} MiB VmHWM (peaks: {:.1} MiB anonymous, {:.1} MiB file pages)",
                    r.peak_rss_anon_kib as f64 / 1024.0,
                    r.peak_rss_file_kib as f64 / 1024.0
                ),
                Some(64.0 / mib.max(1e-9)),
            );
        }
        self.targets = t;
    }

    /// The whole report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### Durable appends ({:.1} s per configuration; `rounds` > 1: interleaved rounds of 2/3 of that each)\n",
            self.seconds_per_config
        );
        let _ = writeln!(
            s,
            "| system | writers | payload | msg/s | MB/s | p50 us | p99 us | p99.9 us | syncs/msg | rounds | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.runs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
                r.system,
                r.writers,
                size_name(r.payload),
                r.msgs_per_sec,
                r.mb_per_sec,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.syncs_per_msg.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into()),
                r.rounds,
                r.note.as_deref().unwrap_or("")
            );
        }
        if !self.compaction.is_empty() {
            let _ = writeln!(
                s,
                "\n### Compaction into the FTS index (same messages)\n\n| payload | messages | tidelog apply_batch(1000) msg/s | SQLite v11 triggers, one transaction msg/s | SQLite v11 triggers, transaction per row msg/s | ratio vs one tx | ratio vs per row | tidelog index MB | SQLite MB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for c in &self.compaction {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.0} | {:.0} ({} rows in the time budget) | {:.2}x | {:.0}x | {:.1} | {:.1} |",
                    size_name(c.payload),
                    c.messages,
                    c.tidelog_msgs_per_sec,
                    c.sqlite_one_tx_msgs_per_sec,
                    c.sqlite_per_tx_msgs_per_sec,
                    c.sqlite_per_tx_messages,
                    c.tidelog_msgs_per_sec / c.sqlite_one_tx_msgs_per_sec,
                    c.tidelog_msgs_per_sec / c.sqlite_per_tx_msgs_per_sec,
                    c.tidelog_index_bytes as f64 / 1e6,
                    c.sqlite_bytes as f64 / 1e6
                );
            }
        }
        if let Some(l) = &self.lag {
            let _ = writeln!(
                s,
                "\n### Compactor lag under a steady load\n\n| target rate | achieved | payload | seconds | samples (50 ms) | unindexed p50 / p99 / max | lag p99 / max | drain after stop | batches |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let _ = writeln!(
                s,
                "| {:.0} msg/s | {:.0} msg/s | {} | {:.1} | {} | {} / {} / {} | {:.0} ms / {:.0} ms | {:.0} ms | {} |",
                l.target_rate,
                l.achieved_rate,
                size_name(l.payload),
                l.seconds,
                l.samples,
                l.p50_unindexed,
                l.p99_unindexed,
                l.max_unindexed,
                l.p99_lag_ms,
                l.max_lag_ms,
                l.drain_ms,
                l.batches
            );
        }
        if !self.reopen.is_empty() {
            let _ = writeln!(
                s,
                "\n### Reopen and verify\n\n| journal | bytes | segments | active segment | reopen after clean close | same, cold cache | reopen after SIGKILL | same, cold cache | records scanned after kill | verify | verify, cold cache |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let ms = |v: Option<f64>| v.map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "-".into());
            let mbs = |v: Option<f64>| v.map(|x| format!("{x:.0} MB/s")).unwrap_or_else(|| "-".into());
            for r in &self.reopen {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} MB | {} | {:.0} MB | {:.1} ms | {} | {:.1} ms | {} | {} | {} | {} |",
                    r.label,
                    r.journal_bytes as f64 / 1e6,
                    r.segments,
                    r.active_bytes as f64 / 1e6,
                    r.clean_ms,
                    ms(r.clean_cold_ms),
                    r.kill_ms,
                    ms(r.kill_cold_ms),
                    r.kill_records_scanned,
                    mbs(r.verify_mb_per_sec),
                    mbs(r.verify_cold_mb_per_sec)
                );
            }
        }
        if !self.rss.is_empty() {
            let _ = writeln!(
                s,
                "\n### Peak memory (each phase alone in a child process)\n\n| phase | messages (200 B) | seconds | msg/s | syncs | VmHWM | peak RssAnon | peak RssFile (mapped journal pages) |\n|---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for r in &self.rss {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.1} | {:.0} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                    if r.phase == "append" {
                        "append (Store::append_batch of 100)"
                    } else {
                        "compact (Store compactor)"
                    },
                    r.messages,
                    r.seconds,
                    r.messages as f64 / r.seconds.max(1e-9),
                    r.syncs,
                    r.vm_hwm_kib as f64 / 1024.0,
                    r.peak_rss_anon_kib as f64 / 1024.0,
                    r.peak_rss_file_kib as f64 / 1024.0
                );
            }
        }
        let _ = writeln!(s, "\n### Targets\n\n| target | measured | ratio to target | result |\n|---|---|---:|---|");
        for t in &self.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.target,
                t.measured,
                t.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into()),
                match t.met {
                    Some(true) => "MET",
                    Some(false) => "MISSED",
                    None => "not run",
                }
            );
        }
        s
    }

    /// Throughput and p99 latency against writer count, at the primary payload, as SVG.
    pub fn chart(&self, path: &Path) -> Result<()> {
        let p = self.primary_payload;
        let systems = [
            ("tidelog store", RGBColor(0x1f, 0x77, 0xb4)),
            ("tidelog journal", RGBColor(0x2c, 0xa0, 0x2c)),
            ("sqlite FULL+FTS", RGBColor(0xd6, 0x27, 0x28)),
            ("sqlite NORMAL+FTS", RGBColor(0xff, 0x7f, 0x0e)),
            ("sqlite FULL no FTS", RGBColor(0x94, 0x67, 0xbd)),
        ];
        // (system, colour, points of (writers, msg/s, p99 us))
        type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64, f64)>);
        let series: Vec<Series> = systems
            .iter()
            .map(|(name, c)| {
                let pts = self
                    .runs
                    .iter()
                    .filter(|r| r.system == *name && r.payload == p && r.messages > 0)
                    .map(|r| (r.writers as f64, r.msgs_per_sec, f64::from(r.p99_us.max(1))))
                    .collect();
                (*name, *c, pts)
            })
            .filter(|(_, _, v): &Series| !v.is_empty())
            .collect();
        let raw = self.run("raw write+fdatasync", 1, p);
        let all: Vec<&(f64, f64, f64)> = series.iter().flat_map(|s| s.2.iter()).collect();
        if all.is_empty() {
            return Err(anyhow!("nothing to chart"));
        }
        let max_w = all.iter().map(|v| v.0).fold(1.0, f64::max) * 1.3;
        let mut tp = all.iter().map(|v| v.1).chain(raw.map(|r| r.msgs_per_sec)).collect::<Vec<_>>();
        let mut lat = all.iter().map(|v| v.2).chain(raw.map(|r| f64::from(r.p99_us.max(1)))).collect::<Vec<_>>();
        tp.sort_by(f64::total_cmp);
        lat.sort_by(f64::total_cmp);
        let range =
            |v: &[f64]| (v.first().copied().unwrap_or(1.0).max(0.1) / 2.0, v.last().copied().unwrap_or(10.0) * 2.0);
        let (tlo, thi) = range(&tp);
        let (llo, lhi) = range(&lat);

        let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let root = root
            .titled(&format!("Durable appends, {} messages, against writer count", size_name(p)), ("sans-serif", 22))
            .map_err(|e| anyhow!("{e}"))?;
        let (left, right) = root.split_horizontally(600);
        for (area, is_tp) in [(left, true), (right, false)] {
            let (lo, hi) = if is_tp { (tlo, thi) } else { (llo, lhi) };
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .caption(
                    if is_tp { "throughput (msg/s, log)" } else { "p99 commit latency (us, log)" },
                    ("sans-serif", 18),
                )
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((0.8f64..max_w).log_scale(), (lo..hi).log_scale())
                .map_err(|e| anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .x_desc("writers (threads, each its own connection for SQLite)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
            for (name, color, pts) in &series {
                let data: Vec<(f64, f64)> = pts.iter().map(|&(w, t, l)| (w, if is_tp { t } else { l })).collect();
                let c = *color;
                chart
                    .draw_series(LineSeries::new(data.clone(), c.stroke_width(2)))
                    .map_err(|e| anyhow!("{e}"))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                chart.draw_series(data.iter().map(|&pt| Circle::new(pt, 3, c.filled()))).map_err(|e| anyhow!("{e}"))?;
            }
            if let Some(r) = raw {
                let y = if is_tp { r.msgs_per_sec } else { f64::from(r.p99_us.max(1)) };
                chart
                    .draw_series(LineSeries::new(vec![(0.8, y), (max_w, y)], BLACK.stroke_width(1)))
                    .map_err(|e| anyhow!("{e}"))?
                    .label("raw write+fdatasync (1 writer)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}
