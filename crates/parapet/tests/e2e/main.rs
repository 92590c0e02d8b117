//! End-to-end: the real `parapet` binary on 127.0.0.1 ports, driven by SIPp
//! (Debian `sip-tester`, installed by scripts/test.sh), baresip and the CLI, as
//! an operator and real clients would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

macro_rules! passes {
    ($server:expr, $run:expr) => {{
        let (ok, msgs) = $run;
        assert!(
            ok,
            "SIPp scenario failed. Messages:\n{msgs}\nServer log:\n{}",
            $server.log()
        );
    }};
}

mod admin;
mod api;
mod archive;
mod archive_sessions;
mod bad_input;
mod baresip;
mod calls;
mod capacity;
mod cdr;
mod certificates;
mod defaults;
mod devices;
mod edge;
mod edge_relay;
mod federation;
mod federation_dialogs;
mod files;
mod files_limits;
mod files_policy;
mod harness;
mod im;
mod im_filter;
mod kamailio_peer;
mod linphone;
mod linphone_files;
mod media;
mod nat_lab;
mod node_loss;
mod operations;
mod page;
mod policies;
mod pool;
mod pool_presence;
mod postgres;
mod presence;
mod quickstart;
mod registrar;
mod relay;
mod security;
mod signin;
mod stale_routes;
mod traces;
mod user_api;
mod web_clients;
