//! Howdy configuration and face model reader (in progress).
