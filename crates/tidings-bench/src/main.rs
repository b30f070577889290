//! `tidings-bench`: the load generator and benchmark suite of tidings.
//!
//! `tidings-bench suite` runs every scenario against every server and writes a report;
//! `tidings-bench cluster` measures two nodes over Redis and NATS; `worker` and `bare-server` are
//! the processes the suite starts.

mod bare;
mod cluster;
mod heartbeat;
mod peer;
mod report;
mod rooms;
mod scale;
mod scenario;
mod soak;
mod storm;
mod suite;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use peer::Kind;

/// Most sockets one server process can hold here (20,000 open files, less its own).
const MAX_SOCKETS: usize = 18_000;

#[derive(Parser)]
#[command(name = "tidings-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenarios against the servers and write the report.
    Suite(SuiteArgs),
    /// Two nodes: publish on A, receive on B, over Redis and the local Redis Cluster (without and
    /// with history) and over NATS (all must be running).
    Cluster {
        /// Small numbers: checks that every publish arrives (not a speed test).
        #[arg(long)]
        quick: bool,
        /// Channels the publishers spread over (each of B's sockets subscribes to all; the bench
        /// lets a session hold 16).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        channels: u16,
        /// The `tidings` binary [default: next to this one].
        #[arg(long)]
        tidings_bin: Option<PathBuf>,
    },
    /// Well-behaved subscribers of a broadcast beside hostile clients, against one node.
    Soak {
        /// Small numbers: checks that the harness works (not a measurement).
        #[arg(long)]
        quick: bool,
        /// How long the attacks last, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The `tidings` binary [default: next to this one].
        #[arg(long)]
        tidings_bin: Option<PathBuf>,
    },
    /// A reconnect storm: three nodes on Redis with history, the one holding every socket
    /// killed; every socket recovers on the others (Redis must be running).
    Storm {
        /// Small numbers: checks that the harness works (not a measurement).
        #[arg(long)]
        quick: bool,
        /// The `tidings` binary [default: next to this one].
        #[arg(long)]
        tidings_bin: Option<PathBuf>,
    },
    /// 100,000 sockets over six nodes on Redis (or a Redis Cluster) and a spare: connect time,
    /// broadcasts and channel publishes, server memory, and one node killed (Redis must be
    /// running).
    Scale {
        /// Small numbers: checks that the harness works (not a measurement).
        #[arg(long)]
        quick: bool,
        /// Run on this Redis Cluster (comma-separated node URLs) instead of Redis on 6379.
        #[arg(long, value_name = "URLS")]
        cluster: Option<String>,
        /// The `tidings` binary [default: next to this one].
        #[arg(long)]
        tidings_bin: Option<PathBuf>,
    },
    /// Presence channels: subscribe/unsubscribe churn per second with and without them, on the
    /// in-memory store and on Redis (127.0.0.1:6379, which must be running), and Redis's time
    /// per operation; prints a Markdown table.
    Rooms {
        /// Small numbers: checks that the harness works (not a measurement).
        #[arg(long)]
        quick: bool,
        /// The `tidings` binary [default: next to this one].
        #[arg(long)]
        tidings_bin: Option<PathBuf>,
    },
    /// One load-generating process (started by `suite`).
    Worker(worker::WorkerArgs),
    /// The limit server: bare tokio writes of a pre-encoded frame.
    BareServer {
        /// WebSocket address.
        #[arg(long)]
        listen: SocketAddr,
        /// Publish (HTTP) address.
        #[arg(long)]
        http: SocketAddr,
    },
}

#[derive(clap::Args)]
struct SuiteArgs {
    /// Small numbers: checks that the harness works and counts every delivery (not a speed test).
    #[arg(long)]
    quick: bool,
    /// Servers to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tidings,tidings-history,bare,socketio,sockudo"
    )]
    servers: Vec<Kind>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Where to write the raw results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `tidings` binary [default: next to this one].
    #[arg(long)]
    tidings_bin: Option<PathBuf>,
    /// The Socket.IO peer's folder (with node_modules).
    #[arg(long, default_value = "bench/peers/socketio")]
    socketio_dir: PathBuf,
    /// The sockudo binary.
    #[arg(long, default_value = "sockudo")]
    sockudo_bin: PathBuf,
    /// The command to name in the report.
    #[arg(long, default_value = "bench/run.sh")]
    command: String,
    /// Hand-written analysis appended to the report.
    #[arg(long, default_value = "bench/notes.md")]
    notes: PathBuf,
    /// Fail when tidings' server CPU per delivery in `broadcast-max` is more than this many times
    /// the limit's (a regression guard; needs `tidings` and `bare` among the servers).
    #[arg(long)]
    max_cpu_ratio: Option<f64>,
    /// Run `perf` with these arguments on the server over each fan-out run's publish window,
    /// e.g. `--perf "stat -e syscalls:sys_enter_writev"` or `--perf "record -F 999 -g"`.
    #[arg(long)]
    perf: Option<String>,
    /// Run only these scenarios (broadcast, broadcast-max, channels, users, idle, heartbeat)
    /// [default: all].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Where `--perf` writes its output, one file per run.
    #[arg(long, default_value = "target/perf")]
    perf_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(worker::run(args))),
        Command::BareServer { listen, http } => {
            runtime().and_then(|rt| rt.block_on(bare::run(listen, http)))
        }
        Command::Suite(args) => runtime().and_then(|rt| rt.block_on(run_suite(args))),
        Command::Cluster {
            quick,
            channels,
            tidings_bin,
        } => runtime().and_then(|rt| rt.block_on(run_cluster(quick, channels, tidings_bin))),
        Command::Soak {
            quick,
            seconds,
            tidings_bin,
        } => {
            let size = match quick {
                true => soak::Size {
                    good: 200,
                    hostile: 20,
                    seconds: seconds.min(5),
                },
                false => soak::Size {
                    good: 5_000,
                    hostile: 200,
                    seconds,
                },
            };
            let run = |programs| runtime().and_then(|rt| rt.block_on(soak::run(&programs, size)));
            programs(tidings_bin).and_then(run)
        }
        Command::Scale {
            quick,
            cluster,
            tidings_bin,
        } => {
            let size = match quick {
                true => scale::Size {
                    sockets: 600,
                    nodes: 3,
                    channels: 20,
                    broadcasts: 3,
                    publishes: 40,
                },
                false => scale::Size {
                    sockets: 100_000,
                    nodes: 6,
                    channels: 1_000,
                    broadcasts: 10,
                    publishes: 2_000,
                },
            };
            let run = |programs| {
                let cluster = cluster.as_deref();
                runtime().and_then(|rt| rt.block_on(scale::run(&programs, size, cluster)))
            };
            programs(tidings_bin).and_then(run)
        }
        Command::Rooms { quick, tidings_bin } => {
            let size = match quick {
                true => rooms::Size {
                    sockets: 20,
                    rooms: 4,
                    seconds: 1.0,
                },
                false => rooms::Size {
                    sockets: 500,
                    rooms: 50,
                    seconds: 10.0,
                },
            };
            let run = |programs| runtime().and_then(|rt| rt.block_on(rooms::run(&programs, size)));
            programs(tidings_bin).and_then(run)
        }
        Command::Storm { quick, tidings_bin } => {
            let size = match quick {
                true => storm::Size {
                    sockets: 200,
                    channels: 10,
                    rate: 100,
                },
                false => storm::Size {
                    sockets: 10_000,
                    channels: 100,
                    rate: 500,
                },
            };
            let run = |programs| runtime().and_then(|rt| rt.block_on(storm::run(&programs, size)));
            programs(tidings_bin).and_then(run)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| e.to_string())
}

/// Measures one run of a scenario and prints its line.
async fn measure_one(
    kind: Kind,
    scenario: &scenario::Scenario,
    programs: &suite::Programs,
    profile: Option<&suite::Profile>,
) -> suite::Outcome {
    let outcome = suite::measure(kind, scenario, programs, profile).await;
    eprintln!(
        "{:<20} {:<14} {:>6} sockets: {}/{} delivered, {:.0} msgs/s, p99 {} µs, {:.3} CPU µs/delivery, {:.2} KiB/socket{}",
        kind.name(),
        scenario.name,
        scenario.sockets,
        outcome.received,
        outcome.expected,
        outcome.per_second,
        outcome.latency_us[2],
        outcome.cpu_us_per_delivery(),
        outcome.bytes_per_socket() / 1024.0,
        outcome
            .error
            .as_deref()
            .map(|e| format!(" ERROR {e}"))
            .unwrap_or_default()
    );
    outcome
}

/// Runs every scenario against every available server, writes the report, and in quick mode
/// fails unless every delivery arrived.
async fn run_suite(args: SuiteArgs) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = |name: &str| bench.parent().map(|d| d.join(name)).unwrap_or_default();
    let programs = suite::Programs {
        tidings: args.tidings_bin.unwrap_or_else(|| beside("tidings")),
        bench: bench.clone(),
        socketio: args.socketio_dir,
        sockudo: which(&args.sockudo_bin),
    };
    let profile = args.perf.map(|perf| suite::Profile {
        args: perf.split_whitespace().map(String::from).collect(),
        dir: args.perf_dir,
    });
    let chosen = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let all = scenario::suite(args.quick, MAX_SOCKETS);
    let known = |name: &String| name == "heartbeat" || all.iter().any(|s| s.name == name);
    if let Some(unknown) = args.scenarios.iter().find(|name| !known(name)) {
        return Err(format!("--scenarios: no scenario {unknown}"));
    }
    let scenarios: Vec<_> = all.into_iter().filter(|s| chosen(s.name)).collect();
    let mut outcomes = Vec::new();
    let mut unavailable = Vec::new();
    let mut servers = Vec::new();
    for &kind in &args.servers {
        match suite::unavailable(kind, &programs) {
            Some(why) => {
                eprintln!("{}: not measured: {why}", kind.name());
                unavailable.push((kind, why));
            }
            None => servers.push(kind),
        }
    }
    for scenario in &scenarios {
        // Run by run, each server in turn: a drift of the machine over the minutes a scenario
        // takes moves every server's runs alike, not one server's all.
        let mut runs: Vec<Vec<_>> = servers.iter().map(|_| Vec::new()).collect();
        for _ in 0..scenario.runs {
            for (&kind, runs) in servers.iter().zip(&mut runs) {
                runs.push(measure_one(kind, scenario, &programs, profile.as_ref()).await);
            }
        }
        outcomes.extend(runs.into_iter().map(suite::Outcome::median));
    }
    let measured = args.servers.contains(&Kind::Tidings)
        && suite::unavailable(Kind::Tidings, &programs).is_none();
    let heartbeat = if measured && chosen("heartbeat") {
        let h = heartbeat::measure(&programs, args.quick).await;
        eprintln!(
            "{:<20} {:<14} {:>6} sockets: {:.0} beats/s, p99 {} µs; purge of {} sessions {:.1} ms{}",
            "tidings",
            "heartbeat",
            h.sockets,
            h.per_second,
            h.latency_us[2],
            h.purged,
            h.purge_ms,
            h.error
                .as_deref()
                .map(|e| format!(" ERROR {e}"))
                .unwrap_or_default()
        );
        Some(h)
    } else {
        None
    };
    let notes = std::fs::read_to_string(&args.notes).unwrap_or_default();
    let text = report::markdown(
        &outcomes,
        heartbeat.as_ref(),
        &unavailable,
        &args.command,
        &notes,
    );
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    if let Some(json) = &args.json {
        let all = serde_json::json!({ "fanout": outcomes, "heartbeat": heartbeat });
        let raw = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        std::fs::write(json, raw).map_err(|e| format!("{}: {e}", json.display()))?;
    }
    let incomplete: Vec<_> = outcomes.iter().filter(|o| !o.complete()).collect();
    let heartbeat_failed = heartbeat.as_ref().and_then(|h| h.error.clone());
    let failed = incomplete.len() + usize::from(heartbeat_failed.is_some());
    let passed = outcomes.len() + usize::from(heartbeat.is_some()) - failed;
    eprintln!("bench: {passed} passed, {failed} failed");
    if let Some(max) = args.max_cpu_ratio {
        cpu_guard(&outcomes, max)?;
    }
    if args.quick && (failed > 0 || outcomes.is_empty()) {
        return Err(format!(
            "{} runs lost deliveries or sockets{}",
            incomplete.len(),
            heartbeat_failed
                .map(|e| format!("; heartbeat: {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}

/// The regression guard: tidings' server CPU per delivery in `broadcast-max` against the limit's.
fn cpu_guard(outcomes: &[suite::Outcome], max: f64) -> Result<(), String> {
    let cpu = |kind| {
        outcomes
            .iter()
            .find(|o| o.kind == kind && o.scenario.name == "broadcast-max" && o.complete())
            .map(suite::Outcome::cpu_us_per_delivery)
            .filter(|us| *us > 0.0)
            .ok_or_else(|| {
                format!(
                    "cpu guard: no complete broadcast-max run of {}",
                    kind.name()
                )
            })
    };
    let (ours, limit) = (cpu(Kind::Tidings)?, cpu(Kind::Bare)?);
    let ratio = ours / limit;
    eprintln!(
        "cpu guard: tidings {ours:.3} µs per delivery, the limit {limit:.3}: {ratio:.2}× (at most {max}×)"
    );
    if ratio > max {
        return Err(format!(
            "cpu guard: tidings' server CPU per delivery is {ratio:.2}× the limit's in broadcast-max, \
             over {max}× (a per-recipient allocation or copy on the fan-out path?)"
        ));
    }
    Ok(())
}

/// Runs the two-node scenario on both buses and prints a Markdown table; fails if a publish was
/// lost.
async fn run_cluster(
    quick: bool,
    channels: u16,
    tidings_bin: Option<PathBuf>,
) -> Result<(), String> {
    let programs = programs(tidings_bin)?;
    println!(
        "| bus | sockets on B | publishes/s A→B | frames received | p50 µs | p90 µs | p99 µs | max µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = Vec::new();
    let buses = [
        "redis",
        "redis-history",
        "redis-cluster",
        "redis-cluster-history",
        "nats",
    ];
    for bus in buses {
        let o = cluster::measure(&programs, bus, usize::from(channels), quick).await;
        let [p50, p90, p99, max] = o.latency_us;
        println!(
            "| {bus} | {} | {:.0} | {}/{} | {p50} | {p90} | {p99} | {max} |",
            o.sockets,
            o.per_second,
            o.received,
            o.published * o.sockets as u64
        );
        if let Some(e) = o.error {
            failed.push(format!("{bus}: {e}"));
        }
    }
    match cluster::redis_benchmark(quick) {
        Ok(line) => println!("\n`redis-benchmark -q -c 64 PUBLISH` on the same Redis: {line}"),
        Err(e) => println!("\nredis-benchmark: {e}"),
    }
    match cluster::redis_cluster_benchmark(quick) {
        Ok(line) => println!(
            "\n`redis-benchmark -q -c 64 SPUBLISH` on the Redis Cluster shard of the channel: {line}"
        ),
        Err(e) => println!("\nredis-benchmark on the Redis Cluster: {e}"),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// This binary and `tidings` (as given, or next to this one), without the peers.
fn programs(tidings_bin: Option<PathBuf>) -> Result<suite::Programs, String> {
    let bench = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = |name: &str| bench.parent().map(|d| d.join(name)).unwrap_or_default();
    Ok(suite::Programs {
        tidings: tidings_bin.unwrap_or_else(|| beside("tidings")),
        bench: bench.clone(),
        socketio: PathBuf::new(),
        sockudo: PathBuf::new(),
    })
}

/// A program's path: as given if it has a slash, else found on `PATH`.
fn which(program: &PathBuf) -> PathBuf {
    if program.components().count() > 1 {
        return program.clone();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
        .unwrap_or_else(|| program.clone())
}
