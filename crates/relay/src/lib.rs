//! weaver-relay
