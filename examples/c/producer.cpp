// A framebus producer in C++17: creates a bus and publishes the fake
// camera's test pattern (so any framebus consumer can verify every byte),
// written in place into the shared slot, or copied in with --copy.
//
//   c++ -std=c++17 -O2 producer.cpp $(pkg-config --cflags --libs framebus) -o producer
//   ./producer --bus cam0 --size 640x480 --fps 30        # prints "ready bus=cam0"
//   framebus consume --bus cam0 --algo verify
//
// Options: --bus NAME (required), --size WxH (640x480), --fps F (30; 0 =
// as fast as possible), --frames N (stop after N; default: until SIGINT or
// SIGTERM), --max-consumers N (8), --format gray8|gray16|bgr8|rgb8 (gray8),
// --bits N (gray16's significant bits, e.g. 12 for a mono12 camera; 0 =
// all), --copy (publish from a private buffer instead of writing in place).
// Exit status: 0 (stopped cleanly, bus removed), 3 a framebus error, 64 usage.
#include <framebus.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

int usage() {
  std::cerr << "usage: producer --bus NAME [--size WxH] [--fps F] [--frames N] [--max-consumers N]\n"
               "                [--format gray8|gray16|bgr8|rgb8] [--bits N] [--copy]\n";
  return 64;
}

// A framebus_format by name, or 0 for a name it does not know.
uint32_t format_by_name(const std::string& name) {
  if (name == "gray8") return FRAMEBUS_FORMAT_GRAY8;
  if (name == "gray16") return FRAMEBUS_FORMAT_GRAY16;
  if (name == "bgr8") return FRAMEBUS_FORMAT_BGR8;
  if (name == "rgb8") return FRAMEBUS_FORMAT_RGB8;
  return 0;
}

// Bytes of one pixel in a framebus_format.
size_t bytes_per_pixel(uint32_t format) {
  switch (format) {
    case FRAMEBUS_FORMAT_GRAY16: return 2;
    case FRAMEBUS_FORMAT_BGR8:
    case FRAMEBUS_FORMAT_RGB8: return 3;
    default: return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string bus;
  unsigned width = 640, height = 480, max_consumers = 8, bits = 0;
  uint32_t format = FRAMEBUS_FORMAT_GRAY8;
  double fps = 30.0;
  unsigned long long frames = 0;
  bool copy = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--bus" && has_value) bus = argv[++i];
    else if (a == "--size" && has_value) {
      if (std::sscanf(argv[++i], "%ux%u", &width, &height) != 2) return usage();
    } else if (a == "--fps" && has_value) fps = std::atof(argv[++i]);
    else if (a == "--frames" && has_value) frames = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--max-consumers" && has_value) max_consumers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--format" && has_value) {
      format = format_by_name(argv[++i]);
      if (format == 0) return usage();
    } else if (a == "--bits" && has_value) bits = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--copy") copy = true;
    else return usage();
  }
  if (bus.empty()) return usage();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  try {
    framebus::Producer::Options options;
    options.max_consumers = max_consumers;
    options.nominal_fps = fps;
    options.format = format;
    options.significant_bits = bits;
    framebus::Producer producer(bus, width, height, options);
    const framebus_bus_info info = producer.bus_info();
    std::cout << "ready bus=" << bus << " size=" << info.width << "x" << info.height << " stride=" << info.stride
              << " format=" << info.format << " bits=" << info.significant_bits << std::endl;

    // --copy: a tightly packed private frame.
    const uint32_t row_bytes = static_cast<uint32_t>(width * bytes_per_pixel(format));
    std::vector<uint8_t> buffer;
    if (copy) buffer.resize(static_cast<size_t>(row_bytes) * height);
    using clock = std::chrono::steady_clock;
    const auto period = fps > 0 ? std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(1.0 / fps))
                                : clock::duration::zero();
    auto next = clock::now();
    uint64_t seq = 0;
    while (!g_stop && (frames == 0 || seq < frames)) {
      if (copy) {
        // The next frame's seq is the last one + 1 (the library numbers them).
        framebus::detail::check(framebus_pattern_fill(buffer.data(), buffer.size(), width, height, row_bytes, format,
                                                      info.significant_bits, seq + 1));
        const uint64_t got = producer.publish(buffer.data(), buffer.size());
        if (got != seq + 1) throw std::runtime_error("unexpected seq " + std::to_string(got));
        seq = got;
      } else {
        seq = producer.fill([](framebus_slot& slot) { framebus::fill_pattern(slot); });
      }
      if (period > clock::duration::zero()) {
        next += period;
        // Sleep in short naps with housekeeping between them, so a
        // consumer that dies while we idle is reclaimed promptly.
        while (!g_stop) {
          const auto now = clock::now();
          if (now >= next) break;
          std::this_thread::sleep_for(std::min<clock::duration>(next - now, std::chrono::milliseconds(20)));
          producer.housekeeping();
        }
        if (clock::now() > next + period) next = clock::now();  // fell behind: do not burst
      }
    }
    const framebus_producer_stats st = producer.stats();
    producer.shutdown();
    std::cout << "published " << st.frames << " frames, reclaimed " << st.reclaimed << " consumers" << std::endl;
  } catch (const framebus::Error& e) {
    std::cerr << "error: " << e.what() << " (code " << static_cast<int>(e.code()) << ")" << std::endl;
    return 3;
  }
  return 0;
}
