//! rackctl: the command-line client of rackd's admin socket, and offline tools
//! (`rackctl config validate`). The printers mirror Cilium's CLI so operators' habits and
//! scripts carry over.

pub mod print;
pub mod print_egress;
pub mod print_lb;
pub mod routes_args;
pub mod tabwriter;
pub mod validate;
