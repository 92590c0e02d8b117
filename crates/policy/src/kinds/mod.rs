//! One module per policy kind: its fields, documented, with secure defaults.
//! Meanings follow the Lync controls they replace
//! (`../shared/reference/lync-controls.md`); where Parapet's default is
//! stricter, the field's `lync` says what Lync did.

pub mod archiving;
pub mod authentication;
pub mod client_version;
pub mod conferencing;
pub mod external_access;
pub mod federation;
pub mod file_transfer;
pub mod im_filter;
pub mod media;
pub mod privacy;

use crate::spec::KindSpec;

/// Every kind, in the order the security view shows them.
pub(crate) static ALL: &[&KindSpec] = &[
    &authentication::SPEC,
    &external_access::SPEC,
    &federation::SPEC,
    &privacy::SPEC,
    &im_filter::SPEC,
    &file_transfer::SPEC,
    &media::SPEC,
    &client_version::SPEC,
    &conferencing::SPEC,
    &archiving::SPEC,
];
