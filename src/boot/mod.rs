//! Reserved for the boot module; it arrives with its issue.
