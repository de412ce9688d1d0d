# Build options.  Each GPU backend is AUTO (built when its toolchain is found), ON (fail
# clearly when it is not) or OFF.
foreach(backend CUDA HIP OPENCL)
  set(POLYATTN_${backend} AUTO CACHE STRING "Build the ${backend} backend: AUTO, ON or OFF")
  set_property(CACHE POLYATTN_${backend} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${POLYATTN_${backend}}" _value)
  if(NOT _value MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "POLYATTN_${backend} must be AUTO, ON or OFF, not '${POLYATTN_${backend}}'")
  endif()
  set(POLYATTN_${backend} ${_value} CACHE STRING "" FORCE)
endforeach()

option(POLYATTN_WERROR "Treat warnings as errors" OFF)
option(POLYATTN_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)

set(POLYATTN_BACKENDS_BUILT "")

# polyattn_backend_not_found(<BACKEND> <why>): FATAL when ON, a notice when AUTO.
function(polyattn_backend_not_found backend why)
  if(POLYATTN_${backend} STREQUAL "ON")
    message(FATAL_ERROR "POLYATTN_${backend}=ON but ${why}")
  else()
    message(STATUS "polyattn: ${backend} backend skipped: ${why}")
  endif()
endfunction()

# Library type.  Shared (the default): libpolyattn.so plus one module per GPU backend, loaded
# at run time.  Static: libpolyattn.a with the backends linked in (no dlopen).  Either switch
# selects the static build (see cmake/PolyattnBackendModule.cmake).
option(BUILD_SHARED_LIBS "Build libpolyattn.so and backend modules (OFF: a static build)" ON)
option(POLYATTN_STATIC "Build a static libpolyattn.a with the backends linked in" OFF)
