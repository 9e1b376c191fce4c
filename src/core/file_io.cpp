#include "core/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error_internal.hpp"

namespace ds4::detail {

namespace {

constexpr size_t kWriteBuffer = size_t{1} << 18;

const char* kind_of(const struct stat& st) {
    if (S_ISDIR(st.st_mode)) return "a directory";
    if (S_ISFIFO(st.st_mode)) return "a FIFO";
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
    if (S_ISSOCK(st.st_mode)) return "a socket";
    return "not a regular file";
}

// A name no other writer of this or another process picks at the same time
// (O_EXCL makes sure; a clash only costs another try).
std::string temporary_name(const std::string& path) {
    static std::atomic<uint64_t> counter{0};
    const auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(now % 1000000007);
}

std::string folder_of(const std::string& path) {
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    return dir.empty() ? std::string(".") : dir.string();
}

void sync_folder(const std::string& path) {
    const std::string dir = folder_of(path);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(ErrorCode::IoError, "%s: cannot open its folder to sync it: %s", path.c_str(), std::strerror(errno));
    const int rc = ::fsync(fd);
    const int e = errno;
    ::close(fd);
    if (rc != 0 && e != EINVAL)  // EINVAL: the file system cannot sync folders
        fail(ErrorCode::IoError, "%s: cannot sync its folder: %s", path.c_str(), std::strerror(e));
}

}  // namespace

// ---- InputFile ----------------------------------------------------------------

InputFile::InputFile(std::string path, const char* what) : path_(std::move(path)), what_(what) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd_ < 0) fail(ErrorCode::IoError, "%s: cannot open %s: %s", path_.c_str(), what_, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        const int e = errno;
        ::close(fd_);
        fail(ErrorCode::IoError, "%s: cannot stat %s: %s", path_.c_str(), what_, std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd_);
        fail(ErrorCode::IoError, "%s: cannot read it as a %s: it is %s", path_.c_str(), what_, kind_of(st));
    }
    size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() { ::close(fd_); }

void InputFile::read_at(uint64_t offset, void* out, size_t n) const {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
        const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) fail(ErrorCode::IoError, "%s: cannot read %s: %s", path_.c_str(), what_, std::strerror(errno));
        if (got == 0)
            fail(ErrorCode::CorruptFile, "%s: %s is truncated (ends at byte %llu)", path_.c_str(), what_,
                 static_cast<unsigned long long>(offset));
        p += got;
        offset += static_cast<uint64_t>(got);
        n -= static_cast<size_t>(got);
    }
}

std::vector<uint8_t> InputFile::read_all() const {
    std::vector<uint8_t> bytes(static_cast<size_t>(size_));
    read_at(0, bytes.data(), bytes.size());
    return bytes;
}

std::vector<uint8_t> read_file(const std::string& path, const char* what, uint64_t max_bytes) {
    const InputFile f(path, what);
    if (f.size() > max_bytes)
        fail(ErrorCode::CorruptFile, "%s: %s of %llu bytes is larger than the %llu bytes it may have", path.c_str(),
             what, static_cast<unsigned long long>(f.size()), static_cast<unsigned long long>(max_bytes));
    return f.read_all();
}

// ---- AtomicFileWriter -----------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
    if (path_.empty()) fail(ErrorCode::InvalidArgument, "cannot write a file with an empty path");
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        fail(ErrorCode::IoError, "%s: cannot write it: it is %s, which is not replaced by a file", path_.c_str(),
             kind_of(st));
    for (int attempt = 0; fd_ < 0; ++attempt) {
        tmp_ = temporary_name(path_);
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ < 0 && (errno != EEXIST || attempt == 100))
            fail(ErrorCode::IoError, "%s: cannot create a temporary file next to it: %s", path_.c_str(),
                 std::strerror(errno));
    }
    buffer_.reserve(kWriteBuffer);
}

AtomicFileWriter::~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::write_fd(const uint8_t* p, size_t n) {
    while (n > 0) {
        const ssize_t put = ::write(fd_, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0)
            fail(ErrorCode::IoError, "%s: write failed after %llu bytes: %s", path_.c_str(),
                 static_cast<unsigned long long>(written_), std::strerror(errno));
        p += put;
        n -= static_cast<size_t>(put);
    }
}

void AtomicFileWriter::flush_buffer() {
    write_fd(buffer_.data(), buffer_.size());
    buffer_.clear();
}

void AtomicFileWriter::write(const void* data, size_t n) {
    if (committed_) fail(ErrorCode::Internal, "%s: write after commit", path_.c_str());
    const auto* p = static_cast<const uint8_t*>(data);
    if (buffer_.size() + n > kWriteBuffer) flush_buffer();
    if (n >= kWriteBuffer) {
        write_fd(p, n);
    } else {
        buffer_.insert(buffer_.end(), p, p + n);
    }
    written_ += n;
}

void AtomicFileWriter::commit() {
    if (committed_) fail(ErrorCode::Internal, "%s: committed twice", path_.c_str());
    flush_buffer();
    if (::fsync(fd_) != 0) fail(ErrorCode::IoError, "%s: cannot flush to disk: %s", path_.c_str(), std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail(ErrorCode::IoError, "%s: write failed on close: %s", path_.c_str(), std::strerror(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
        fail(ErrorCode::IoError, "%s: cannot rename the written file into place: %s", path_.c_str(),
             std::strerror(errno));
    committed_ = true;
    sync_folder(path_);
}

void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes) {
    AtomicFileWriter out(path);
    out.write(bytes.data(), bytes.size());
    out.commit();
}

void write_file_atomically(const std::string& path, std::string_view text) {
    write_file_atomically(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace ds4::detail
