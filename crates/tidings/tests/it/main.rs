//! Integration tests over real TCP: a real server, real WebSocket clients, real HTTP.

mod api;
mod api_doc;
mod axum_example;
mod bad_input;
mod history;
mod metrics;
mod presence;
mod proxy;
mod publish;
mod pusher;
mod redis_presence;
mod redis_sessions;
mod rpc;
mod serve;
mod services;
mod sessions;
mod slow_consumer;
mod slow_store;
mod support;
mod tokens;
mod websocket;
