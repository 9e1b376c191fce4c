// The message of the ds4::Error a call throws, for tests that check what an
// error names.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>

#include "ds4/error.hpp"

namespace ds4::test_support {

// The message of the ds4::Error `f` throws (and its code, if asked); fails the
// test if `f` throws nothing or something else.
inline std::string error_of(const std::function<void()>& f, ErrorCode* code = nullptr) {
    try {
        f();
    } catch (const Error& e) {
        if (code) *code = e.code();
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not a ds4::Error: " << e.what();
        return {};
    }
    ADD_FAILURE() << "no error";
    return {};
}

}  // namespace ds4::test_support
