//! # parapet-store-tests: one test suite for every back end of the store
//!
//! Each case is an async function over any `store::Store`; a back end's
//! test file opens a fresh, empty store per case and hands it over with
//! [`store_cases!`], so SQLite and PostgreSQL are held to the same
//! behaviour by the same assertions. What only one back end can show
//! (SQLite's group commit, a file opened by two processes, tampering with
//! the raw tables) stays in that back end's own tests.
//!
//! [`pg`] starts a real PostgreSQL server for the tests (Debian's
//! `postgresql` package, installed by `scripts/install-test-deps.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub
)]

pub mod admins;
pub mod archive;
pub mod cdr;
pub mod core;
pub mod devices;
pub mod edges;
pub mod files;
pub mod lockouts;
pub mod pg;
pub mod presence;
pub mod races;
pub mod sessions;

/// The audit key every test store is opened with.
pub const AUDIT_KEY: [u8; 32] = [7; 32];

/// A `#[tokio::test]` per shared case, each on a store from `$open`: an
/// async function taking the case's name and returning a fresh store.
#[macro_export]
macro_rules! store_cases {
    ($open:path) => {
        $crate::store_cases!(@each $open;
            core::users_lifecycle,
            core::bulk_import_is_all_or_nothing,
            core::bindings_refresh_expire_and_keep_their_path,
            core::bindings_of_many_users_are_read_at_once,
            core::expired_bindings_go_by_key_unless_refreshed_since,
            core::pending_messages_keep_arrival_order,
            core::a_message_sent_again_under_its_own_id_is_stored_once,
            core::many_concurrent_callers_are_served,
            core::a_registers_changes_are_all_or_nothing,
            core::registrations_at_once_fail_alone,
            core::policies_grants_groups_and_sites,
            admins::admins_sign_in_lockout_and_replay,
            admins::roles_and_tokens,
            admins::audited_writes_commit_with_their_record_or_not_at_all,
            admins::audit_list_filters,
            devices::devices_are_capped_per_user_listed_and_revoked_one_or_all,
            devices::a_disabled_account_a_new_password_or_removal_ends_every_device,
            devices::a_totp_step_is_used_once_and_enrolment_needs_a_pending_secret,
            devices::an_enrollment_code_works_once_for_its_user_until_it_expires,
            devices::a_device_is_stored_only_for_an_enabled_user_within_a_live_session,
            files::quotas_are_checked_with_the_insert,
            files::only_the_owner_and_granted_recipients_may_fetch,
            files::expiry_deletion_records_and_a_removed_owner,
            lockouts::lockout_state_is_saved_replaced_removed_and_purged,
            edges::edges_are_paired_replaced_unpaired_and_never_imported_back,
            archive::archive_records_are_found_purged_held_and_sealed_again,
            archive::an_archive_key_name_is_claimed_once_until_forgotten,
            cdr::usage_records_are_found_by_party_and_time_and_purged_when_due,
            presence::publications_replace_expire_and_go_with_the_user,
            presence::subscriptions_round_trip_and_refresh,
            presence::contact_lists_with_groups,
            sessions::sessions_are_found_with_their_accounts_state_and_capped_per_user,
            sessions::a_new_password_a_disabled_account_or_a_removed_user_ends_sessions,
            races::checks_and_their_writes_do_not_interleave,
            races::a_device_never_outlives_a_password_change_made_at_the_same_time,
        );
    };
    (@each $open:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::$module::$name($open(stringify!($name)).await).await
            }
        )*
    };
}
