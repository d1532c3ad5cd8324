// framebus.hpp: header-only C++17 wrapper of the framebus C API
// (framebus.h). RAII handles, errors as exceptions, and a zero-copy
// cv::Mat view of a pinned frame when OpenCV is available.
//
//   framebus::Consumer bus("cam0");
//   while (framebus::Frame frame = bus.next_frame(std::chrono::seconds(1))) {
//     cv::Mat img = framebus::as_mat(frame);   // no copy; valid while `frame` lives
//     ...
//   }                                          // the frame's pin is released here
//
// Rules (doc/C_API.md): a Consumer or Producer serves one call at a time
// (a concurrent call throws Error with FRAMEBUS_ERROR_CONCURRENT_USE); a
// Frame is immutable and may be read from any number of threads. Every
// failure throws framebus::Error, carrying the status code and the
// library's message; a timeout is not a failure (an empty Frame).
//
// OpenCV: as_mat() exists when FRAMEBUS_WITH_OPENCV is defined, or when
// <opencv2/core.hpp> is on the include path (define FRAMEBUS_WITHOUT_OPENCV
// to leave it out regardless).
#ifndef FRAMEBUS_HPP
#define FRAMEBUS_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "framebus.h"

#if !defined(FRAMEBUS_WITHOUT_OPENCV)
#if defined(FRAMEBUS_WITH_OPENCV)
#define FRAMEBUS_HAS_OPENCV 1
#elif defined(__has_include)
#if __has_include(<opencv2/core.hpp>)
#define FRAMEBUS_HAS_OPENCV 1
#endif
#endif
#endif

#ifdef FRAMEBUS_HAS_OPENCV
#include <opencv2/core.hpp>
#endif

namespace framebus {

/// A failed call: the status code and the library's message.
class Error : public std::runtime_error {
 public:
  Error(framebus_status code, const std::string& message)
      : std::runtime_error(std::string(framebus_status_name(code)) + ": " + message),
        code_(code),
        message_(message) {}

  /// The status code (a FRAMEBUS_ERROR_* value).
  framebus_status code() const noexcept { return code_; }
  /// The library's message alone (what() also names the code).
  const std::string& message() const noexcept { return message_; }

 private:
  framebus_status code_;
  std::string message_;
};

namespace detail {

/// Throws Error for any status but FRAMEBUS_OK.
inline void check(framebus_status s) {
  if (s != FRAMEBUS_OK) {
    throw Error(s, framebus_last_error_message());
  }
}

/// Throws if the loaded library cannot serve this header.
inline void check_abi() {
  const uint32_t v = framebus_abi_version();
  if (!FRAMEBUS_ABI_COMPATIBLE(v)) {
    throw Error(FRAMEBUS_ERROR_OTHER,
                "libframebus has ABI " + std::to_string(v >> 16) + "." + std::to_string(v & 0xFFFFu) +
                    ", this program was built against " + std::to_string(FRAMEBUS_ABI_VERSION_MAJOR) +
                    "." + std::to_string(FRAMEBUS_ABI_VERSION_MINOR));
  }
}

/// Milliseconds for the C API; negative = forever.
inline int64_t to_ms(std::chrono::milliseconds t) { return static_cast<int64_t>(t.count()); }

}  // namespace detail

/// "Wait forever" for Consumer::next_frame and the attach timeout.
inline constexpr std::chrono::milliseconds forever{-1};

/// A pinned frame. Its pixels are the shared slot itself (no copy) and stay
/// unchanged while the Frame lives; destroying it (or reset()) releases the
/// pin. Move-only. An empty Frame (no frame: a timeout) is false.
class Frame {
 public:
  Frame() noexcept = default;

  /// Takes ownership of a frame handle from the C API.
  explicit Frame(framebus_frame* f) : f_(f) {
    if (f_ == nullptr) return;
    const framebus_status s = framebus_frame_get_info(f_, &info_);
    if (s != FRAMEBUS_OK) {
      const std::string message = framebus_last_error_message();
      reset();
      throw Error(s, message);
    }
  }

  ~Frame() { reset(); }

  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;
  Frame(Frame&& o) noexcept : f_(std::exchange(o.f_, nullptr)), info_(o.info_) {}
  Frame& operator=(Frame&& o) noexcept {
    if (this != &o) {
      reset();
      f_ = std::exchange(o.f_, nullptr);
      info_ = o.info_;
    }
    return *this;
  }

  /// Whether this holds a frame.
  explicit operator bool() const noexcept { return f_ != nullptr; }

  /// Releases the pin now (the destructor does it otherwise).
  void reset() noexcept {
    if (f_ != nullptr) {
      // Cannot fail for a live handle.
      (void)framebus_frame_release(f_);
      f_ = nullptr;
      info_ = framebus_frame_info{};
    }
  }

  /// The C handle (still owned by this Frame).
  framebus_frame* get() const noexcept { return f_; }
  /// Everything about the frame.
  const framebus_frame_info& info() const noexcept { return info_; }

  uint32_t width() const noexcept { return info_.width; }
  uint32_t height() const noexcept { return info_.height; }
  /// Bytes from one row to the next (>= width * bytes per pixel).
  uint32_t stride() const noexcept { return info_.stride; }
  /// A framebus_format value (FRAMEBUS_FORMAT_GRAY8, _GRAY16, _BGR8, _RGB8).
  uint32_t format() const noexcept { return info_.format; }
  /// Significant bits of each value: 8, or 10/12/16 for gray16.
  uint32_t significant_bits() const noexcept { return info_.significant_bits; }
  uint64_t seq() const noexcept { return info_.seq; }
  /// Nanoseconds on the bus's clock (framebus::monotonic_ns()).
  uint64_t capture_ns() const noexcept { return info_.capture_ns; }
  /// Nanoseconds on the bus's clock (framebus::monotonic_ns()).
  uint64_t publish_ns() const noexcept { return info_.publish_ns; }
  /// Publish to pin, nanoseconds, as the library measured it.
  uint64_t latency_ns() const noexcept { return info_.latency_ns; }
  /// The first pixel; rows stride() bytes apart. Read-only.
  const uint8_t* data() const noexcept { return info_.data; }
  /// Bytes at data(): stride() * height().
  size_t size() const noexcept { return info_.len; }
  /// Row y (width() pixels of the frame's format; no bounds check).
  const uint8_t* row(uint32_t y) const noexcept { return info_.data + static_cast<size_t>(y) * info_.stride; }

  /// Whether the frame holds the fake camera's test pattern for its seq;
  /// `why` (if given) gets the first difference. Throws Error for other
  /// failures (an empty Frame).
  bool verify_pattern(std::string* why = nullptr) const {
    const framebus_status s = framebus_frame_verify_pattern(f_);
    if (s == FRAMEBUS_ERROR_PATTERN_MISMATCH) {
      if (why != nullptr) *why = framebus_last_error_message();
      return false;
    }
    detail::check(s);
    return true;
  }

 private:
  framebus_frame* f_ = nullptr;
  framebus_frame_info info_{};
};

#ifdef FRAMEBUS_HAS_OPENCV
/// The cv::Mat type of a framebus_format: CV_8UC1 (gray8), CV_16UC1
/// (gray16: a mono10/12 camera's values are unshifted, see
/// Frame::significant_bits()), CV_8UC3 (bgr8, OpenCV's own channel order;
/// rgb8 too, whose channels are then red, green, blue). Throws Error for a
/// format this header does not know.
inline int mat_type(uint32_t format) {
  switch (format) {
    case FRAMEBUS_FORMAT_GRAY8: return CV_8UC1;
    case FRAMEBUS_FORMAT_GRAY16: return CV_16UC1;
    case FRAMEBUS_FORMAT_BGR8: return CV_8UC3;
    case FRAMEBUS_FORMAT_RGB8: return CV_8UC3;
    default: throw Error(FRAMEBUS_ERROR_INVALID_ARGUMENT, "unknown pixel format " + std::to_string(format));
  }
}

/// The frame as a cv::Mat header over the shared slot (type mat_type(),
/// step = stride): no copy. It must not outlive `frame`, and must not be
/// written (the pixels are mapped read-only: a write crashes). clone() it
/// to keep or modify the image; cv::cvtColor(m, out, cv::COLOR_RGB2BGR)
/// for an rgb8 frame that OpenCV should see as BGR. Throws for an empty
/// frame or an unknown format.
inline const cv::Mat as_mat(const Frame& frame) {
  if (!frame) throw Error(FRAMEBUS_ERROR_INVALID_ARGUMENT, "as_mat of an empty Frame");
  const int type = mat_type(frame.format());
  // cv::Mat has no read-only type: the const_cast only lets it point at the
  // slot; the mapping itself is read-only.
  return cv::Mat(static_cast<int>(frame.height()), static_cast<int>(frame.width()), type,
                 const_cast<uint8_t*>(frame.data()), static_cast<size_t>(frame.stride()));
}
#endif

/// A consumer of one bus (attach in the constructor, leave in the
/// destructor). Move-only.
class Consumer {
 public:
  struct Options {
    /// Shown by `framebus inspect` (16 bytes kept).
    std::string name = "cpp";
    /// Frame rate limit; 0 = every frame it keeps up with.
    double max_fps = 0.0;
    /// How long to wait for a producer: 0 = fail at once, forever = wait.
    std::chrono::milliseconds attach_timeout{0};
  };

  /// Attaches to `bus`; throws Error (FRAMEBUS_ERROR_BUS_NOT_FOUND, ...).
  explicit Consumer(const std::string& bus) : Consumer(bus, Options{}) {}
  Consumer(const std::string& bus, const Options& options) {
    detail::check_abi();
    framebus_consumer_options o;
    detail::check(framebus_consumer_options_init(&o));
    o.name = options.name.c_str();
    o.max_fps = options.max_fps;
    detail::check(framebus_consumer_attach(bus.c_str(), &o, detail::to_ms(options.attach_timeout), &c_));
  }

  ~Consumer() {
    if (c_ != nullptr) (void)framebus_consumer_leave(c_);
  }

  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;
  Consumer(Consumer&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Consumer& operator=(Consumer&& o) noexcept {
    if (this != &o) {
      if (c_ != nullptr) (void)framebus_consumer_leave(c_);
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }

  /// Waits up to `timeout` (framebus::forever: no limit) for a frame newer
  /// than the last one taken and pins the newest; an empty Frame on timeout.
  Frame next_frame(std::chrono::milliseconds timeout = forever) {
    framebus_frame* f = nullptr;
    const framebus_status s = framebus_consumer_next_frame(c_, detail::to_ms(timeout), &f);
    if (s == FRAMEBUS_TIMEOUT) return Frame();
    detail::check(s);
    return Frame(f);
  }

  /// The newest frame if it is new, without waiting; else an empty Frame.
  Frame pin_newest() {
    framebus_frame* f = nullptr;
    const framebus_status s = framebus_consumer_pin_newest(c_, &f);
    if (s == FRAMEBUS_NO_FRAME) return Frame();
    detail::check(s);
    return Frame(f);
  }

  /// The bus's geometry and this consumer's entry.
  framebus_bus_info bus_info() {
    framebus_bus_info i{};
    detail::check(framebus_consumer_get_bus_info(c_, &i));
    return i;
  }

  /// Frames taken, re-attachments, coalesced triggers, skipped frames.
  framebus_consumer_stats stats() {
    framebus_consumer_stats s{};
    detail::check(framebus_consumer_get_stats(c_, &s));
    return s;
  }

  /// The C handle (still owned by this Consumer).
  framebus_consumer* get() const noexcept { return c_; }

 private:
  framebus_consumer* c_ = nullptr;
};

/// The producer of one bus (created in the constructor, shut down and
/// freed in the destructor). Move-only.
class Producer {
 public:
  struct Options {
    uint32_t max_consumers = 8;
    /// Frames each consumer may hold at once (2: the previous one while it
    /// takes the next).
    uint32_t pins_per_consumer = 2;
    /// Written into the header for `inspect`; the caller paces.
    double nominal_fps = 0.0;
    /// A framebus_format value.
    uint32_t format = FRAMEBUS_FORMAT_GRAY8;
    /// For gray16: 10 or 12 for a mono10/12 camera; 0 = all bits.
    uint32_t significant_bits = 0;
  };

  /// Creates bus `bus` for width x height frames (gray8 unless `options`
  /// say otherwise); throws Error (FRAMEBUS_ERROR_BUS_BUSY if a live
  /// producer has it, FRAMEBUS_ERROR_INVALID_ARGUMENT for a bad format...).
  Producer(const std::string& bus, uint32_t width, uint32_t height) : Producer(bus, width, height, Options{}) {}
  Producer(const std::string& bus, uint32_t width, uint32_t height, const Options& options) {
    detail::check_abi();
    framebus_producer_options o;
    detail::check(framebus_producer_options_init(&o));
    o.max_consumers = options.max_consumers;
    o.pins_per_consumer = options.pins_per_consumer;
    o.nominal_fps = options.nominal_fps;
    o.format = options.format;
    o.significant_bits = options.significant_bits;
    detail::check(framebus_producer_create(bus.c_str(), &o, width, height, &p_));
  }

  ~Producer() {
    if (p_ != nullptr) (void)framebus_producer_destroy(p_);
  }

  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  Producer(Producer&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Producer& operator=(Producer&& o) noexcept {
    if (this != &o) {
      if (p_ != nullptr) (void)framebus_producer_destroy(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }

  /// Copies a frame in (rows of width * bytes per pixel, src_stride bytes
  /// apart; 0 = packed) and publishes it; returns its seq. capture_ns is
  /// on the bus's clock (monotonic_ns()); 0 = now.
  uint64_t publish(const uint8_t* data, size_t len, uint32_t src_stride = 0, uint64_t capture_ns = 0) {
    uint64_t seq = 0;
    detail::check(framebus_producer_publish(p_, data, len, src_stride, capture_ns, &seq));
    return seq;
  }

  /// Publishes a frame written in place: calls `fill(framebus_slot&)` once
  /// with the slot (write slot.data; set slot.capture_ns if known). If
  /// `fill` throws, nothing is published and the exception is rethrown
  /// here (it never crosses the C library). Returns the frame's seq.
  template <class F>
  uint64_t fill(F&& fill) {
    struct Context {
      F* fill;
      std::exception_ptr error;
    } ctx{&fill, nullptr};
    framebus_fill_fn trampoline = [](void* user, framebus_slot* slot) noexcept -> int {
      auto* c = static_cast<Context*>(user);
      try {
        (*c->fill)(*slot);
        return 0;
      } catch (...) {
        c->error = std::current_exception();
        return 1;
      }
    };
    uint64_t seq = 0;
    const framebus_status s = framebus_producer_fill(p_, trampoline, &ctx, &seq);
    if (ctx.error) std::rethrow_exception(ctx.error);
    detail::check(s);
    return seq;
  }

  /// Connects new consumers and reclaims dead ones; call it every ~50 ms
  /// while not publishing.
  void housekeeping() { detail::check(framebus_producer_housekeeping(p_)); }

  /// Stops the bus now (the destructor does it otherwise).
  void shutdown() { detail::check(framebus_producer_shutdown(p_)); }

  framebus_bus_info bus_info() {
    framebus_bus_info i{};
    detail::check(framebus_producer_get_bus_info(p_, &i));
    return i;
  }

  framebus_producer_stats stats() {
    framebus_producer_stats s{};
    detail::check(framebus_producer_get_stats(p_, &s));
    return s;
  }

  /// The C handle (still owned by this Producer).
  framebus_producer* get() const noexcept { return p_; }

 private:
  framebus_producer* p_ = nullptr;
};

/// Writes frame slot.seq of the fake camera's test pattern into the slot,
/// in the slot's format (for a producer whose frames any framebus consumer
/// can verify).
inline void fill_pattern(framebus_slot& slot) {
  detail::check(framebus_pattern_fill(slot.data, slot.len, slot.width, slot.height, slot.stride, slot.format,
                                      slot.significant_bits, slot.seq));
}

/// Now on the bus's clock, in nanoseconds (for capture times).
inline uint64_t monotonic_ns() noexcept { return framebus_monotonic_ns(); }

}  // namespace framebus

#endif  // FRAMEBUS_HPP
