// The C++ wrapper's RAII in one program: attach, hold one frame, drop it
// when told to, and show the errors as framebus::Error codes.
//
//   ./hold_frame BUS
// prints "attached entry=E", then "holding seq=S slot-bytes=N"; then tries
// to take a second frame, which the bus's pin budget refuses ("second
// frame: FRAMEBUS_ERROR_PIN_BUDGET ..."); waits for a line on stdin,
// destroys the Frame (releasing its pin), prints "released", waits for
// another line and leaves. An error prints
// "error code=N name=NAME message=TEXT" and exits with status 3.
#include <framebus.hpp>

#include <chrono>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: hold_frame BUS\n";
    return 64;
  }
  try {
    framebus::Consumer consumer(argv[1]);
    std::cout << "attached entry=" << consumer.bus_info().entry << std::endl;
    {
      framebus::Frame frame = consumer.next_frame(std::chrono::seconds(10));
      if (!frame) {
        std::cerr << "no frame within 10 s\n";
        return 4;
      }
      std::cout << "holding seq=" << frame.seq() << " slot-bytes=" << frame.size() << std::endl;
      try {
        framebus::Frame second = consumer.next_frame(std::chrono::seconds(10));
        std::cout << "second frame: " << (second ? "taken (unexpected)" : "timeout") << std::endl;
      } catch (const framebus::Error& e) {
        std::cout << "second frame: " << framebus_status_name(e.code()) << " " << e.message() << std::endl;
      }
      std::string line;
      std::getline(std::cin, line);
    }  // the Frame's destructor releases the pin here
    std::cout << "released" << std::endl;
    std::string line;
    std::getline(std::cin, line);
  } catch (const framebus::Error& e) {
    std::cout << "error code=" << static_cast<int>(e.code()) << " name=" << framebus_status_name(e.code())
              << " message=" << e.message() << std::endl;
    return 3;
  }
  return 0;
}
