//! How stacks are captured: the public enum, a leaf (the tracer chooses
//! the method, the data layer reports it).

/// How stacks are captured, as reported by [`capture_method`](crate::capture_method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureMethod {
    /// Walking the chain of saved frame pointers: about a nanosecond a frame.
    /// Needs frame pointers in every frame between the allocation and the
    /// frames kept: the standard library has them; build your code with
    /// `-C force-frame-pointers=yes`.
    FramePointers,
    /// Unwinding with the DWARF call-frame information: works in any build.
    /// On x86-64 Linux with a cache of unwind rules (`framehop`, about 10 ns a
    /// frame once warm); elsewhere with `backtrace::trace_unsynchronized`
    /// (about 100 ns a frame).
    Unwinder,
}
