//! # parapet-content: what is inside messages and files
//!
//! Pure functions over message bodies and file contents, no I/O:
//! [`im_filter`], Lync's Intelligent IM Filter done on the server (links
//! found after Unicode normalisation, then defused, flagged or refused as
//! the policy says); [`cpim`], the strict reader and writer of the
//! `message/cpim` wrapper (RFC 3862) whose inner body the filter examines;
//! [`files`], the file-transfer policy's judgement of a file by its
//! normalised name, its content's type and what archives hold;
//! [`multipart`], `multipart/form-data` read as an upload arrives;
//! [`ft_http`], the RCS file pointers Linphone sends in MESSAGEs;
//! [`offers`], file transfers offered between clients (MSRP, Lync).
#![forbid(unsafe_code)]

pub mod cpim;
pub mod files;
pub mod ft_http;
pub mod im_filter;
pub mod multipart;
pub mod offers;
