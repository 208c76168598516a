//! Emulator tests: each API's validation rules and every fault mode, over raw HTTP.
