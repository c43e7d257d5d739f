//! c2watch: watches a network tap for connections to known command-and-control endpoints
//! and reports each one as a CEF record for Microsoft Sentinel's `CommonSecurityLog`.
//!
//! Data flows one way, one module per stage:
//! capture -> [`decode`] -> [`indicator`] (match) -> [`flow`] -> [`alert`] -> [`cef`] ->
//! [`output`]. [`engine`] runs the per-packet stages for a capture worker; [`config`],
//! [`feed`] and [`metrics`] serve them all.

#![warn(missing_docs)]

pub mod alert;
pub mod app;
pub mod capture;
pub mod cef;
pub mod config;
pub mod decode;
pub mod endpoint;
pub mod engine;
pub mod feed;
pub mod flow;
pub mod indicator;
pub mod live;
pub mod metrics;
pub mod output;
pub mod testkit;
pub mod timefmt;
