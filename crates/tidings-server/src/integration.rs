//! The settings that tie tidings to the app's backend: the `[token]` key that checks connection
//! and subscription tokens, the `[rpc_proxy]` that answers RPC calls, and the `[pusher]` apps.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::HubBuilder;
use tidings::auth::TokenKey;
use tidings::pusher::PusherApp;
use tidings::rpc::RpcProxy;

/// The `[token]` table: how tokens signed by the backend are checked.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Secret shared with the backend, for HS256 tokens; unset (and no public_key): tokens are refused
    #[arg(
        id = "token_secret",
        long = "token-secret",
        env = "TIDINGS_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// PEM file of the backend's public key, for RS256 or ES256 tokens (instead of secret)
    #[arg(
        id = "token_public_key",
        long = "token-public-key",
        env = "TIDINGS_TOKEN_PUBLIC_KEY",
        value_name = "FILE"
    )]
    pub public_key: Option<String>,

    /// HS256 (with secret), RS256 or ES256 (with public_key) [default: HS256]
    #[arg(
        id = "token_algorithm",
        long = "token-algorithm",
        env = "TIDINGS_TOKEN_ALGORITHM",
        value_name = "ALG"
    )]
    pub algorithm: Option<String>,
}

/// The `[rpc_proxy]` table: RPC calls without a Rust handler POSTed to the backend.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpcProxySettings {
    /// URL RPC calls are POSTed to (http://); unset: calls get unknown_method
    #[arg(
        id = "rpc_proxy_url",
        long = "rpc-proxy-url",
        env = "TIDINGS_RPC_PROXY_URL",
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// Key of the HMAC-SHA256 signature in X-Tidings-Signature (required with url)
    #[arg(
        id = "rpc_proxy_secret",
        long = "rpc-proxy-secret",
        env = "TIDINGS_RPC_PROXY_SECRET",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Milliseconds the backend may take to answer; past it the client gets backend_timeout [default: 10000]
    #[arg(
        id = "rpc_proxy_timeout_ms",
        long = "rpc-proxy-timeout-ms",
        env = "TIDINGS_RPC_PROXY_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub timeout_ms: Option<u64>,
}

impl TokenSettings {
    /// Gives the builder the token key, if one is configured.
    pub fn apply(self, builder: HubBuilder) -> Result<HubBuilder, String> {
        let algorithm = self.algorithm.as_deref().map(str::to_ascii_uppercase);
        let key = match (self.secret, self.public_key, algorithm.as_deref()) {
            (None, None, None) => return Ok(builder),
            (None, None, Some(_)) => {
                return Err(
                    "token.algorithm is set but neither token.secret nor token.public_key".into(),
                );
            }
            (Some(_), Some(_), _) => {
                return Err("token.secret and token.public_key are both set: use one".into());
            }
            (Some(secret), None, None | Some("HS256")) => {
                if secret.is_empty() {
                    return Err("token.secret: must not be empty".into());
                }
                TokenKey::hs256(secret)
            }
            (Some(_), None, Some(other)) => {
                return Err(format!(
                    "token.algorithm: {other} takes token.public_key, not token.secret"
                ));
            }
            (None, Some(path), algorithm) => {
                let pem = std::fs::read(&path)
                    .map_err(|e| format!("token.public_key: cannot read {path}: {e}"))?;
                let key = match algorithm {
                    Some("RS256") => TokenKey::rs256_pem(&pem),
                    Some("ES256") => TokenKey::es256_pem(&pem),
                    _ => {
                        return Err(
                            "token.algorithm: set RS256 or ES256 for token.public_key".into()
                        );
                    }
                };
                key.map_err(|e| format!("token.public_key: {path}: {e}"))?
            }
        };
        Ok(builder.token_key(key))
    }
}

impl RpcProxySettings {
    /// Gives the builder the RPC proxy, if a URL is set.
    pub fn apply(self, builder: HubBuilder) -> Result<HubBuilder, String> {
        let Some(url) = self.url else {
            return match (self.secret, self.timeout_ms) {
                (None, None) => Ok(builder),
                _ => Err(
                    "rpc_proxy.secret or rpc_proxy.timeout_ms is set but rpc_proxy.url is not"
                        .into(),
                ),
            };
        };
        let secret = self
            .secret
            .ok_or("rpc_proxy.url is set but rpc_proxy.secret is not: calls are always signed")?;
        let mut proxy = RpcProxy::new(url, secret);
        match self.timeout_ms {
            Some(0) => return Err("rpc_proxy.timeout_ms: must be more than 0".into()),
            Some(ms) => proxy.timeout = Duration::from_millis(ms),
            None => {}
        }
        Ok(builder.rpc_proxy(proxy))
    }
}

/// The `[pusher]` table: Pusher apps served over Pusher's protocol (`docs/pusher.md`): any
/// number as `[[pusher.apps]]` tables, and one more by the `app_*` settings (flags and
/// variables).
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PusherSettings {
    /// A Pusher app's id (with app_key and app_secret), in the HTTP API's paths /apps/{id}/…
    #[arg(
        id = "pusher_app_id",
        long = "pusher-app-id",
        env = "TIDINGS_PUSHER_APP_ID",
        value_name = "ID"
    )]
    pub app_id: Option<String>,

    /// That app's key, which clients connect to (/app/{key})
    #[arg(
        id = "pusher_app_key",
        long = "pusher-app-key",
        env = "TIDINGS_PUSHER_APP_KEY",
        value_name = "KEY"
    )]
    pub app_key: Option<String>,

    /// That app's secret, which signs subscriptions, API requests and webhooks
    #[arg(
        id = "pusher_app_secret",
        long = "pusher-app-secret",
        env = "TIDINGS_PUSHER_APP_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub app_secret: Option<String>,

    /// `[[pusher.apps]]` tables (config file only): `id`, `key`, `secret`, and optionally
    /// `channel_prefix` and `enable_client_messages`.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<PusherApp>,
}

impl PusherSettings {
    /// Gives the builder every app configured.
    pub fn apply(self, mut builder: HubBuilder) -> Result<HubBuilder, String> {
        for app in self.apps {
            builder = builder.pusher_app(app);
        }
        match (self.app_id, self.app_key, self.app_secret) {
            (None, None, None) => Ok(builder),
            (Some(id), Some(key), Some(secret)) => {
                Ok(builder.pusher_app(PusherApp::new(id, key, secret)))
            }
            _ => Err("pusher.app_id, pusher.app_key and pusher.app_secret go together".into()),
        }
    }
}
