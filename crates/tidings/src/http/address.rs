//! The client's address behind a proxy: the per-address limits (sockets, new sessions) count
//! the address a trusted proxy puts in a header, not the proxy's own.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderName;

/// Replaces the request's peer address with the last address of the `header` a trusted proxy
/// set (the one the proxy saw: those before it came from the client and may be forged). A
/// request without the header, or whose last entry is not an address, keeps its peer address.
pub(super) async fn from_header(
    State(header): State<HeaderName>,
    mut request: Request,
    next: Next,
) -> Response {
    let forwarded = request
        .headers()
        .get_all(&header)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(last_address);
    if let Some(ip) = forwarded {
        let port = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(0, |info| info.0.port());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, port)));
    }
    next.run(request).await
}

/// The last address of a comma-separated list (`203.0.113.7, 10.0.0.2`), with or without a
/// port (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn last_address(list: &str) -> Option<IpAddr> {
    let last = list.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::last_address;

    #[test]
    fn the_last_entry_counts_with_or_without_a_port() {
        let cases = [
            ("203.0.113.7", Some("203.0.113.7")),
            ("1.1.1.1, 203.0.113.7", Some("203.0.113.7")),
            ("1.1.1.1,203.0.113.7:4711", Some("203.0.113.7")),
            ("[2001:db8::1]:4711", Some("2001:db8::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("203.0.113.7, unknown", None),
            ("", None),
        ];
        for (list, expected) in cases {
            let got = last_address(list).map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), expected, "{list:?}");
        }
    }
}
