//! Reserved for the glance module; it arrives with its issue.
