//! Golden payloads: every fixture user rendered through every shipped mapping.
