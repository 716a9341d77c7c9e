//! The drive loop over in-memory pipes (filled in below).
