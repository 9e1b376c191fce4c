// <immintrin.h> for the files compiled with AVX-512 flags.
//
// GCC 12's AVX-512 intrinsics initialise their "undefined" pass-through
// operand with itself (GCC bug 105593, fixed in GCC 13), which -Wall reports
// as maybe-uninitialized in every inlined caller. Silence that for the
// intrinsics' own lines.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
