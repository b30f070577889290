//! Writes `docs/benchmarks.md`: the machine, the command, and one table per scenario.

use std::fmt::Write;

use crate::heartbeat::HeartbeatOutcome;
use crate::peer::Kind;
use crate::scenario::Grouping;
use crate::suite::Outcome;

/// The machine: cores, memory and CPU model, from `/proc`.
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let memory = field(&read("/proc/meminfo"), "MemTotal");
    let cpu = field(&read("/proc/cpuinfo"), "model name");
    format!("{cores} cores (`nproc`), {memory} memory, {cpu}")
}

/// Today's date (UTC), from `date`.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// `a / b` as a ratio, or a dash when it means nothing.
fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// Milliseconds from microseconds.
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The report, followed by the hand-written analysis in `notes` (if any).
pub fn markdown(
    outcomes: &[Outcome],
    heartbeat: Option<&HeartbeatOutcome>,
    unavailable: &[(Kind, String)],
    command: &str,
    notes: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Measured {} on {}.\n", today(), machine());
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(
        out,
        "Every server runs alone, restarted for each run, with the same load generator (`tidings-bench`, \
         its sockets spread over worker processes and source addresses 127.0.R.x, fresh for each run) on the same machine: \
         server and generator share its cores, so these are numbers for this machine, not a peer's \
         best. Each payload carries its send time; latency is publish (HTTP request sent) to receive, \
         over HTTP connections the generator opened before the first (16, by publishing to a group \
         no socket is in). \
         The limit is a bare tokio loop writing one pre-encoded frame to each socket. \
         Server CPU is the server process's user + system time (`/proc/PID/stat`, children included) \
         from the first publish to the last delivery, divided by the deliveries: it depends less than \
         throughput on how the cores were shared with the generator. Scenarios run several times \
         report each column's median; their runs take turns (one run of each server, then the next), \
         so a drift of the machine moves every server's runs alike.\n"
    );
    let tidings = |name: &str, sockets: usize| {
        outcomes.iter().find(|o| {
            o.kind == Kind::Tidings && o.scenario.name == name && o.scenario.sockets == sockets
        })
    };
    let mut seen = Vec::new();
    for o in outcomes
        .iter()
        .filter(|o| o.scenario.grouping != Grouping::Idle)
    {
        if seen.contains(&o.scenario.name) {
            continue;
        }
        seen.push(o.scenario.name);
        let s = &o.scenario;
        let _ = writeln!(out, "## {}: {}\n", s.name, s.title);
        let _ = writeln!(
            out,
            "{} sockets, {} publishes, {} deliveries expected.\n",
            s.sockets,
            s.messages,
            s.expected()
        );
        let _ = writeln!(
            out,
            "| server | delivered | msgs/s | p50 ms | p90 ms | p99 ms | max ms | tidings msgs/s ÷ this | server CPU µs per delivery | CPU ÷ limit's |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        let ours = tidings(s.name, s.sockets);
        let limit = outcomes
            .iter()
            .find(|r| r.kind == Kind::Bare && r.scenario.name == s.name)
            .map_or(0.0, Outcome::cpu_us_per_delivery);
        for r in outcomes.iter().filter(|r| r.scenario.name == s.name) {
            let [p50, p90, p99, max] = r.latency_us;
            let vs = ratio(ours.map_or(0.0, |t| t.per_second), r.per_second);
            let cpu = r.cpu_us_per_delivery();
            let delivered = match &r.error {
                Some(e) => format!("failed: {e}"),
                None => format!("{}/{}", r.received, r.expected),
            };
            let _ = writeln!(
                out,
                "| {} | {delivered} | {:.0} | {} | {} | {} | {} | {vs} | {cpu:.3} | {} |",
                r.kind.name(),
                r.per_second,
                ms(p50),
                ms(p90),
                ms(p99),
                ms(max),
                ratio(cpu, limit)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Memory: idle sockets\n");
    let _ = writeln!(
        out,
        "Server RSS (`/proc/PID/status`) before and after the sockets connected.\n"
    );
    let _ = writeln!(
        out,
        "| server | sockets | RSS before MiB | RSS after MiB | per socket KiB | connections/s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for r in outcomes
        .iter()
        .filter(|r| r.scenario.grouping == Grouping::Idle)
    {
        if let Some(e) = &r.error {
            let _ = writeln!(
                out,
                "| {} | {} | failed: {e} | | | |",
                r.kind.name(),
                r.scenario.sockets
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.0} |",
            r.kind.name(),
            r.connected,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.bytes_per_socket() / 1024.0,
            r.setup_per_second
        );
    }
    let _ = writeln!(out);
    if let Some(h) = heartbeat {
        heartbeat_section(&mut out, h);
    }
    if !unavailable.is_empty() {
        let _ = writeln!(out, "## Not measured\n");
        for (kind, why) in unavailable {
            let _ = writeln!(out, "- {}: {why}", kind.name());
        }
        let _ = writeln!(out);
    }
    out.push_str(notes);
    out
}

/// The heartbeat section: beats answered per second, and the purge of many expired sessions.
fn heartbeat_section(out: &mut String, h: &HeartbeatOutcome) {
    let _ = writeln!(out, "## Heartbeat (tidings)\n");
    if let Some(e) = &h.error {
        let _ = writeln!(out, "Failed: {e}\n");
    }
    let _ = writeln!(
        out,
        "{} sockets, one session each, start their heartbeat, then each sends a beat and waits for \
         its reply, for {:.0} s, against `tidings serve` (in-memory store).\n",
        h.sockets, h.seconds
    );
    let _ = writeln!(
        out,
        "| beats answered | beats/s | p50 ms | p90 ms | p99 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let [p50, p90, p99, max] = h.latency_us;
    let _ = writeln!(
        out,
        "| {} | {:.0} | {} | {} | {} | {} |\n",
        h.beats,
        h.per_second,
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    );
    let _ = writeln!(
        out,
        "Purge: {} sessions tracked in the in-memory store ({:.0} ns per beat recorded, no socket), \
         expired, then removed by one `purge()` with a `disconnect` event each: **{:.1} ms** \
         ({:.2} µs per session).\n",
        h.purged,
        h.store_beat_ns,
        h.purge_ms,
        h.purge_ms * 1000.0 / h.purged.max(1) as f64
    );
}
