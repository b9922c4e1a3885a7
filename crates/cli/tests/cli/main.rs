//! Integration tests: the real `ferry` binary against real folders (and object stores when
//! the emulators are running, see `scripts/test-services.sh`).

mod common;

mod backup_restore;
mod damage;
mod dashboard;
mod dashboard_attacks;
mod devices;
mod export;
mod hostile;
mod keys;
mod kill;
mod mount;
mod newcomer;
mod progress;
mod readme;
mod retention;
mod seeding;
mod stores;
mod vault;
mod vault_faults;
mod vault_hostile;
mod vault_pg;
mod vault_policy;
