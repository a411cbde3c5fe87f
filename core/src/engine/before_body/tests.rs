//! Tests for credentials before bodies (filled below).
