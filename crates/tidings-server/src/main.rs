//! `tidings`: the realtime messaging server. A thin command line over the `tidings` library.

mod cluster;
mod config;
mod demo;
mod files;
mod home;
mod integration;
mod printed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use config::LogFormat;
use tracing_subscriber::EnvFilter;

/// How long shutdown waits for sockets to take their close frames.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Realtime pub/sub and presence for browsers, for any backend.
#[derive(Parser)]
#[command(name = "tidings", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no arguments needed: one node, everything in memory).
    Serve(ServeArgs),
}

/// Options of `tidings serve`: from a TOML file, `TIDINGS_*` variables and flags, flags winning.
#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file; its keys are the long flags' names with `_` for `-`, those of
    /// --redis-*, --nats-*, --heartbeat-*, --server-heartbeat-*, --webhook-*, --token-*,
    /// --rpc-proxy-* and --pusher-* in tables [redis], [nats], [heartbeat], [server_heartbeat],
    /// [webhook], [token], [rpc_proxy] and [pusher] (e.g. --heartbeat-beat-delay is beat_delay
    /// under [heartbeat]); Pusher apps in [[pusher.apps]] tables
    #[arg(long, short, env = "TIDINGS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the configuration as `serve` does, print it whole (as TOML, defaults included) and
    /// exit
    #[arg(long)]
    print_config: bool,

    /// Serve a demo chat page at / (its rooms become public presence channels)
    #[arg(long)]
    demo: bool,

    #[command(flatten)]
    settings: config::Settings,
}

fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    let settings = match config::check_environment(std::env::vars())
        .and_then(|()| config::merge(&args.settings, args.config.as_deref()))
    {
        Ok(settings) => settings,
        Err(message) => return fail(&message),
    };
    logs(settings.log_format.unwrap_or(LogFormat::Text));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(args.demo, args.print_config, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// Writes log lines to stderr in `format`, at the level `RUST_LOG` says (default `info`); text
/// is coloured only when stderr is a terminal.
fn logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => lines.json().init(),
    }
}

/// Says where something is served at startup: `what: url` on stdout, or with JSON logs a record
/// like every other.
fn say(json: bool, what: &str, url: &str) {
    if json {
        tracing::info!(url, "{what}");
    } else {
        println!("{what}: {url}");
    }
}

/// A setting's value as its flag takes it (`redis-cluster`).
fn name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Prints an error and returns the failure exit code.
fn fail(message: &str) -> ExitCode {
    eprintln!("tidings: {message}");
    ExitCode::from(2)
}

/// Serves with `settings` until SIGINT or SIGTERM (or prints them, with `print_config`).
async fn serve(
    demo: bool,
    print_config: bool,
    mut settings: config::Settings,
) -> Result<(), String> {
    if demo {
        settings.public_channels = Some(demo::public_channels(settings.public_channels));
        settings.presence_channels = demo::presence_channels(settings.presence_channels);
    }
    let methods = if demo {
        demo::methods
    } else {
        std::convert::identity
    };
    files::raise();
    if print_config {
        // Checked as `serve` checks them (connecting to Redis or NATS when they are used).
        let effective = settings.effective()?;
        let text = printed::print(&settings, &effective)?;
        settings.plan(methods).await?;
        print!("{text}");
        return Ok(());
    }
    let json = settings.log_format == Some(LogFormat::Json);
    let bus = name(&settings.bus.unwrap_or(cluster::BusKind::Memory));
    let store = name(&settings.store.unwrap_or(cluster::StoreKind::Memory));
    let plan = settings.plan(methods).await?;
    let listener = tokio::net::TcpListener::bind(plan.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", plan.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shutdown = shutdown_signal();
    if json {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            listen = %addr,
            websocket = %format!("ws://{addr}/ws"),
            node = %plan.hub.node_id(),
            bus,
            store,
            "listening"
        );
    } else {
        println!(
            "tidings {} listening on http://{addr} (WebSocket: ws://{addr}/ws), node {}",
            env!("CARGO_PKG_VERSION"),
            plan.hub.node_id()
        );
    }
    let hub = plan.hub.clone();
    if let Some(metrics) = plan.metrics_listen {
        let listener = tokio::net::TcpListener::bind(metrics)
            .await
            .map_err(|e| format!("cannot listen on {metrics} (metrics_listen): {e}"))?;
        let at = listener.local_addr().map_err(|e| e.to_string())?;
        let routes = tidings::http::metrics_routes().with_state(hub.clone());
        let serve =
            tidings::http::serve(listener, routes, plan.serve.clone(), std::future::pending());
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        say(json, "metrics", &format!("http://{at}/metrics"));
    }
    let mut app = tidings::http::router(plan.hub, plan.http);
    if demo {
        app = demo::page(app);
        tokio::spawn(demo::relay_presence(hub.clone()));
        say(json, "demo chat", &format!("http://{addr}/"));
    } else {
        app = home::page(app);
    }
    // WebSockets hear 1001 as soon as the signal comes, not after the HTTP requests in progress.
    let closing = hub.clone();
    let shutdown = async move {
        shutdown.await;
        closing.shutdown();
    };
    tidings::http::serve(listener, app, plan.serve, shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    if tokio::time::timeout(DRAIN_TIMEOUT, hub.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            sockets = hub.stats().index.sockets,
            "sockets still open after the drain timeout"
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed at the call, so a signal that
/// comes right after the startup line is a graceful shutdown, not a kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(interrupt.take()) => {}
                () = wait(terminate.take()) => {}
            }
        }
        #[cfg(not(unix))]
        drop(tokio::signal::ctrl_c().await);
        tracing::info!("shutting down: closing sockets with 1001");
    }
}
