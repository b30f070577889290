//! Who a client is and what it may hear: connection tokens signed by the backend, and the rules
//! that say which channels a client may subscribe to by itself.
//!
//! ```
//! use std::time::Duration;
//! use tidings::auth::{Claims, TokenKey};
//!
//! // The backend mints a token for user "fred" that also subscribes to "private:ops" …
//! let token = Claims::new(Duration::from_secs(600))
//!     .user("fred")
//!     .channels(["private:ops"])
//!     .sign_hs256(b"shared secret")
//!     .unwrap();
//! // … the browser connects to `/ws?token=<token>`, and the hub verifies it:
//! let hub_key = TokenKey::hs256(b"shared secret");
//! # let _ = (token, hub_key);
//! ```

mod channels;
mod claims;
#[cfg(feature = "tokens")]
mod token;

pub use crate::error::TokenError;
pub use channels::ChannelRule;
pub use claims::Claims;
#[cfg(feature = "tokens")]
pub use token::{LEEWAY_SECS, TokenKey};

pub(crate) use channels::ChannelRules;
