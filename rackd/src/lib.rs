//! rackd, the node routing daemon: configuration sources, controllers that turn Cilium's
//! resources into BGP sessions, LoadBalancer IPs and L2 announcements, the admin API and
//! metrics. See README.md.

pub mod admin;
pub mod bgp;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod duration;
pub mod handler;
pub mod host;
pub mod k8s;
pub mod l2;
pub mod lbipam_ctl;
pub mod metrics;
pub mod options;
pub mod sdnotify;
pub mod state;
pub mod svclb;
#[cfg(test)]
mod testing;
pub mod views;
