//! The shipper thread that feeds a remote index target ([`RemoteTarget`](crate::RemoteTarget),
//! the seam in `target.rs`) from its own positions, with back-off.

mod shipper;

pub(crate) use shipper::{advance, ahead_lanes, lanes_view, next_batch, run as run_shipper};
