//! Saved whole-run profiles: a versioned file, loaded defensively (Profile::save, Profile::load).
