// Reading and writing whole files. Every failure is a ds4::Error naming the
// file; nothing is read before the file is known to be a regular file of an
// expected size, and nothing is ever left half-written.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::detail {

// A regular file opened for reading. A folder, a device or a FIFO is refused
// before a byte is read (a FIFO without a writer does not block). `what`
// names the kind of file in messages ("snapshot", "topology XML").
class InputFile {
public:
    InputFile(std::string path, const char* what);
    ~InputFile();
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    const std::string& path() const noexcept { return path_; }
    uint64_t size() const noexcept { return size_; }
    // Exactly `n` bytes from `offset` (CorruptFile when the file ends first).
    void read_at(uint64_t offset, void* out, size_t n) const;
    // The whole file: check size() against what is expected first.
    std::vector<uint8_t> read_all() const;

private:
    std::string path_;
    const char* what_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

// The whole regular file, refused without reading it when it holds more than
// `max_bytes`.
std::vector<uint8_t> read_file(const std::string& path, const char* what, uint64_t max_bytes);

// Writes `path` so that no reader ever sees it partial: the bytes go to a new
// temporary file of a unique name in the same folder (created like fopen's,
// mode 0666 less the umask); commit() flushes it to disk, renames it over
// `path` and syncs the folder. Destroyed without commit() (a failed write, an
// exception), it removes the temporary file and `path` is untouched. An
// existing `path` that is not a regular file (a folder, a device) is refused.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::string path);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, size_t n);
    uint64_t bytes_written() const noexcept { return written_; }
    void commit();

private:
    void flush_buffer();
    void write_fd(const uint8_t* p, size_t n);

    std::string path_, tmp_;
    int fd_ = -1;
    bool committed_ = false;
    std::vector<uint8_t> buffer_;
    uint64_t written_ = 0;
};

void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes);
void write_file_atomically(const std::string& path, std::string_view text);

}  // namespace ds4::detail
