//! weaver-bridge
