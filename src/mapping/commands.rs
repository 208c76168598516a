//! `scim-bridge mappings check | preview | diff`: what an admin runs before a mapping ships.
