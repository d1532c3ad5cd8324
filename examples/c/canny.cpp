// OpenCV Canny edges on framebus frames, zero-copy: each pinned frame is
// wrapped in a cv::Mat header over the shared slot (framebus::as_mat), so
// OpenCV reads the producer's pixels where they are. gray8, bgr8 and rgb8
// frames go to Canny as they are; a gray16 frame (Canny takes 8 bits) is
// scaled from its significant bits into a buffer of ours first.
//
//   c++ -std=c++17 -O2 canny.cpp $(pkg-config --cflags --libs framebus opencv4) -o canny
//   ./canny --bus cam0 [--frames N] [--max-fps F]
//
// Prints one line per frame (seq, edge pixels, latency) and a JSON summary
// as the last line. Exit status: 0, 2 if a Mat was not zero-copy, 3 a
// framebus error, 64 usage.
#include <framebus.hpp>

#ifndef FRAMEBUS_HAS_OPENCV
#error "canny.cpp needs OpenCV: compile with $(pkg-config --cflags --libs opencv4)"
#endif

#include <opencv2/imgproc.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  std::string bus;
  unsigned long long frames_wanted = 0;
  double max_fps = 0.0;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--bus" && i + 1 < argc) bus = argv[++i];
    else if (a == "--frames" && i + 1 < argc) frames_wanted = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--max-fps" && i + 1 < argc) max_fps = std::atof(argv[++i]);
    else {
      std::cerr << "usage: canny --bus NAME [--frames N] [--max-fps F]\n";
      return 64;
    }
  }
  if (bus.empty()) {
    std::cerr << "usage: canny --bus NAME [--frames N] [--max-fps F]\n";
    return 64;
  }
  try {
    framebus::Consumer::Options options;
    options.name = "canny";
    options.max_fps = max_fps;
    framebus::Consumer consumer(bus, options);
    std::cout << "attached bus=" << bus << " entry=" << consumer.bus_info().entry << std::endl;
    cv::Mat edges;   // reused: Canny writes into our own buffer, never the slot
    cv::Mat scaled;  // gray16 frames scaled to 8 bits, also ours
    unsigned long long frames = 0, copied = 0;
    while (frames_wanted == 0 || frames < frames_wanted) {
      framebus::Frame frame = consumer.next_frame(std::chrono::seconds(5));
      if (!frame) {
        std::cerr << "no frame within 5 s\n";
        return 4;
      }
      const cv::Mat img = framebus::as_mat(frame);  // header only
      if (img.data != frame.data()) copied++;
      if (frame.format() == FRAMEBUS_FORMAT_GRAY16) {
        // Values 0..2^bits - 1 onto 0..255: times 2^(8 - bits).
        img.convertTo(scaled, CV_8U, std::ldexp(1.0, 8 - static_cast<int>(frame.significant_bits())));
        cv::Canny(scaled, edges, 50, 150);
      } else {
        cv::Canny(img, edges, 50, 150);
      }
      frames++;
      std::cout << "frame seq=" << frame.seq() << " edges=" << cv::countNonZero(edges)
                << " latency_us=" << frame.latency_ns() / 1000 << std::endl;
    }  // each frame's pin is released at the end of its iteration
    std::cout << "{\"frames\":" << frames << ",\"not_zero_copy\":" << copied << "}" << std::endl;
    return copied == 0 ? 0 : 2;
  } catch (const framebus::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 3;
  }
}
