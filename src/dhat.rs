//! DHAT's v2 JSON, the file valgrind's dh_view.html opens (Profile::dhat).
