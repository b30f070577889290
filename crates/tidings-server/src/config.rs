//! Configuration: a TOML file, `TIDINGS_*` environment variables and flags, flags winning.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use serde::{Deserialize, Serialize};
use tidings::http::HttpOptions;
use tidings::{Hub, Limits, NodeId};

/// Every setting of `tidings serve`. Each is optional here; unset ones take the library's defaults.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:7400]
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Key required as `Authorization: Bearer <key>` by /api (required off loopback)
    #[arg(
        long,
        env = "TIDINGS_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// This node's id, prefix of its socket ids [default: random]
    #[arg(long, env = "TIDINGS_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Channels clients may subscribe to: names or prefixes ending in `*`, comma-separated [default: public:*]
    #[arg(
        long,
        env = "TIDINGS_PUBLIC_CHANNELS",
        value_name = "PATTERNS",
        value_delimiter = ','
    )]
    pub public_channels: Option<Vec<String>>,

    /// Seconds a session outlives its last socket [default: 86400]
    #[arg(long, env = "TIDINGS_SESSION_TTL", value_name = "SECONDS")]
    pub session_ttl: Option<u64>,

    /// Largest WebSocket message a client may send, in bytes [default: 65536]
    #[arg(long, env = "TIDINGS_MAX_FRAME_SIZE", value_name = "BYTES")]
    pub max_frame_size: Option<usize>,

    /// Largest `args` array of a published event, in bytes [default: 65536]
    #[arg(long, env = "TIDINGS_MAX_ARGS_SIZE", value_name = "BYTES")]
    pub max_args_size: Option<usize>,

    /// Most channels one session may hold [default: 256]
    #[arg(long, env = "TIDINGS_MAX_CHANNELS_PER_SESSION", value_name = "N")]
    pub max_channels_per_session: Option<usize>,

    /// Longest channel name, user id or event name, in bytes [default: 200]
    #[arg(long, env = "TIDINGS_MAX_NAME_LEN", value_name = "BYTES")]
    pub max_name_len: Option<usize>,

    /// Most messages queued for one socket before it is closed as a slow consumer [default: 1024]
    #[arg(long, env = "TIDINGS_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,

    /// Largest HTTP API request body, in bytes [default: 1048576]
    #[arg(long, env = "TIDINGS_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<usize>,
}

/// The address `tidings serve` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Refuses `TIDINGS_*` environment variables that name no setting (a typo would be ignored otherwise).
pub fn check_environment(vars: impl Iterator<Item = (String, String)>) -> Result<(), String> {
    let command = crate::Cli::command();
    let known: BTreeSet<String> = command
        .get_subcommands()
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_env()?.to_str().map(str::to_owned))
        .collect();
    for (name, _) in vars.filter(|(n, _)| n.starts_with("TIDINGS_")) {
        if !known.contains(&name) {
            let known: Vec<_> = known.iter().map(String::as_str).collect();
            return Err(format!(
                "unknown environment variable {name}: known ones are {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Merges the file's settings under the ones from flags and environment.
pub fn merge(flags: &Settings, file: Option<&Path>) -> Result<Settings, String> {
    let mut merged = match file {
        None => serde_json::Map::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let settings: Settings = toml::from_str(&text)
                .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
            to_map(&settings)?
        }
    };
    merged.extend(to_map(flags)?);
    serde_json::from_value(merged.into()).map_err(|e| format!("invalid configuration: {e}"))
}

/// The settings that are set, as a JSON object.
fn to_map(settings: &Settings) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::to_value(settings).map_err(|e| e.to_string())? {
        serde_json::Value::Object(map) => {
            Ok(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        _ => Err("settings are not a table".into()),
    }
}

/// What `tidings serve` runs: the hub, its HTTP options and the address.
pub struct Plan {
    /// The hub.
    pub hub: Hub,
    /// The HTTP endpoints' options.
    pub http: HttpOptions,
    /// Where to listen.
    pub listen: SocketAddr,
}

impl Settings {
    /// Builds the hub and checks the settings; errors name the setting at fault.
    pub fn plan(self) -> Result<Plan, String> {
        let listen = match self.listen {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().map_err(|e| format!("listen: {e}"))?,
        };
        if self.api_key.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the HTTP API on {listen} without an api_key: set api_key \
                 (--api-key, TIDINGS_API_KEY) or listen on a loopback address"
            ));
        }
        let mut limits = Limits::default();
        let overrides = [
            (&mut limits.max_frame_size, self.max_frame_size),
            (&mut limits.max_args_size, self.max_args_size),
            (
                &mut limits.max_channels_per_session,
                self.max_channels_per_session,
            ),
            (&mut limits.max_name_len, self.max_name_len),
            (&mut limits.outbound_queue, self.outbound_queue),
        ];
        for (limit, value) in overrides {
            if let Some(value) = value {
                *limit = value;
            }
        }
        let mut builder = Hub::builder().limits(limits);
        if let Some(id) = &self.node_id {
            builder = builder.node_id(NodeId::new(id).map_err(|e| format!("node_id: {e}"))?);
        }
        if let Some(patterns) = self.public_channels {
            builder = builder.public_channels(patterns);
        }
        if let Some(ttl) = self.session_ttl {
            builder = builder.session_ttl(Duration::from_secs(ttl));
        }
        let hub = builder.build().map_err(|e| e.to_string())?;
        let mut http = HttpOptions::new();
        if let Some(key) = self.api_key {
            if key.is_empty() {
                return Err("api_key: must not be empty".into());
            }
            http = http.api_key(key);
        }
        if let Some(max_body) = self.max_body {
            http = http.max_body(max_body);
        }
        Ok(Plan { hub, http, listen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a config file named for the test into the temp directory.
    fn file(test: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tidings-{}-{test}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file("precedence", "max_name_len = 5\nsession_ttl = 60\n");
        let flags = Settings {
            max_name_len: Some(7),
            ..Settings::default()
        };
        let merged = merge(&flags, Some(&f)).unwrap();
        assert_eq!(merged.max_name_len, Some(7));
        assert_eq!(merged.session_ttl, Some(60));
    }

    #[test]
    fn unknown_and_mistyped_file_keys_are_named() {
        let f = file("unknown", "max_frame_sise = 5\n");
        let err = merge(&Settings::default(), Some(&f)).unwrap_err();
        assert!(err.contains("max_frame_sise"), "{err}");
        let f = file("mistyped", "outbound_queue = \"lots\"\n");
        let err = merge(&Settings::default(), Some(&f)).unwrap_err();
        assert!(err.contains("outbound_queue"), "{err}");
    }

    #[test]
    fn unknown_environment_variables_are_named() {
        let vars = [("TIDINGS_LISTN".to_string(), "x".to_string())];
        let err = check_environment(vars.into_iter()).unwrap_err();
        assert!(err.contains("TIDINGS_LISTN"), "{err}");
        let vars = [("TIDINGS_LISTEN".to_string(), "x".to_string())];
        assert!(check_environment(vars.into_iter()).is_ok());
    }

    #[tokio::test]
    async fn bad_values_and_exposed_api_without_key_are_refused() {
        let zero = Settings {
            outbound_queue: Some(0),
            ..Settings::default()
        };
        let err = zero.plan().err().unwrap();
        assert!(err.contains("outbound_queue"), "{err}");
        let exposed = Settings {
            listen: Some("0.0.0.0:7400".parse().unwrap()),
            ..Settings::default()
        };
        let err = exposed.plan().err().unwrap();
        assert!(err.contains("api_key"), "{err}");
        let pattern = Settings {
            public_channels: Some(vec!["a*b".into()]),
            ..Settings::default()
        };
        let err = pattern.plan().err().unwrap();
        assert!(err.contains("a*b"), "{err}");
    }

    #[test]
    fn help_states_the_library_defaults() {
        let mut help = Vec::new();
        let mut command = crate::Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        serve.write_long_help(&mut help).unwrap();
        let help = String::from_utf8(help).unwrap();
        let d = Limits::default();
        for (flag, value) in [
            ("--max-frame-size", d.max_frame_size),
            ("--max-args-size", d.max_args_size),
            ("--max-channels-per-session", d.max_channels_per_session),
            ("--max-name-len", d.max_name_len),
            ("--outbound-queue", d.outbound_queue),
        ] {
            let line = help.split(flag).nth(1).unwrap();
            let section = line.split("\n  -").next().unwrap();
            assert!(
                section.contains(&format!("[default: {value}]")),
                "{flag}: {section}"
            );
        }
    }
}
