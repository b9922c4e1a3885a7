//! The states of an import job and of a device job, one lifecycle each over one set of names
//! (docs/protocol.md "Import jobs" and "Seed devices"), and the states of a job's disks.
//!
//! An import job (the customer's disks): created -> awaiting-shipment -> shipping -> received
//! -> transferring -> completed (or completed-with-errors, failed) -> ingesting -> ingested;
//! or expired, cancelled. A device job (a vault-provisioned seed device): ordered -> prepared
//! -> shipped-to-customer -> delivered -> in-use -> returning, then the import's states from
//! received on, and erased at the end. An export job (a recovery point travelling to the
//! machine on disks): created -> preparing -> prepared -> shipped -> delivered -> completed; or
//! cancelled (before it ships), failed.

use serde::{Deserialize, Serialize};

/// An import job's state (`ferry import-job show`); device jobs share them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Created,
    AwaitingShipment,
    Shipping,
    Received,
    Transferring,
    Completed,
    CompletedWithErrors,
    Failed,
    Ingesting,
    Ingested,
    Expired,
    Cancelled,
    // Seed devices (docs/design/seed-devices.md): the vault's device travels to the machine and
    // back, then joins the import states at `received`, and ends `erased`.
    Ordered,
    Prepared,
    ShippedToCustomer,
    Delivered,
    InUse,
    Returning,
    Erased,
    // Export jobs (docs/design/export-jobs.md): created -> preparing -> prepared -> shipped ->
    // delivered -> completed, or cancelled, failed.
    Preparing,
    Shipped,
}

impl JobState {
    pub const ALL: [JobState; 21] = [
        JobState::Created,
        JobState::AwaitingShipment,
        JobState::Shipping,
        JobState::Received,
        JobState::Transferring,
        JobState::Completed,
        JobState::CompletedWithErrors,
        JobState::Failed,
        JobState::Ingesting,
        JobState::Ingested,
        JobState::Expired,
        JobState::Cancelled,
        JobState::Ordered,
        JobState::Prepared,
        JobState::ShippedToCustomer,
        JobState::Delivered,
        JobState::InUse,
        JobState::Returning,
        JobState::Erased,
        JobState::Preparing,
        JobState::Shipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::AwaitingShipment => "awaiting-shipment",
            JobState::Shipping => "shipping",
            JobState::Received => "received",
            JobState::Transferring => "transferring",
            JobState::Completed => "completed",
            JobState::CompletedWithErrors => "completed-with-errors",
            JobState::Failed => "failed",
            JobState::Ingesting => "ingesting",
            JobState::Ingested => "ingested",
            JobState::Expired => "expired",
            JobState::Cancelled => "cancelled",
            JobState::Ordered => "ordered",
            JobState::Prepared => "prepared",
            JobState::ShippedToCustomer => "shipped-to-customer",
            JobState::Delivered => "delivered",
            JobState::InUse => "in-use",
            JobState::Returning => "returning",
            JobState::Erased => "erased",
            JobState::Preparing => "preparing",
            JobState::Shipped => "shipped",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States a job is cancelled from (before its disks are being copied).
    pub const CANCELLABLE: [JobState; 10] = [
        JobState::Created,
        JobState::AwaitingShipment,
        JobState::Shipping,
        JobState::Received,
        JobState::Ordered,
        JobState::Prepared,
        JobState::ShippedToCustomer,
        JobState::Delivered,
        JobState::InUse,
        JobState::Returning,
    ];
    /// States in which a job without a tracking number expires at its deadline.
    pub const EXPIRING: [JobState; 2] = [JobState::Created, JobState::AwaitingShipment];
    /// An export job's states, in the order it goes through them, then its two ends.
    pub const EXPORT: [JobState; 8] = [
        JobState::Created,
        JobState::Preparing,
        JobState::Prepared,
        JobState::Shipped,
        JobState::Delivered,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Failed,
    ];
    /// States an export job is cancelled from (its disks have not left the vault's site).
    pub const EXPORT_CANCELLABLE: [JobState; 4] = [JobState::Created, JobState::Preparing, JobState::Prepared, JobState::Failed];
}

/// The disk states an import reports (and a device's `sealed` and `erased`).
pub const DISK_STATES: [&str; 11] = [
    "prepared",
    "never-received",
    "received",
    "manifest-error",
    "key-invalid",
    "corrupted",
    "transferring",
    "completed",
    "completed-with-errors",
    "sealed",
    "erased",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_one_name_each() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
