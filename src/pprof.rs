//! pprof: gzipped perftools.profiles.Profile protobuf (feature pprof).
