//! Frame primitives shared by every protocol's wire format (to be written).
