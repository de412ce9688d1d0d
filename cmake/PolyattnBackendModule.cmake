# How a GPU backend becomes part of the library.
#
# Shared build (the default): each backend is a module, libpolyattn_<name>.so.<SOVERSION>,
# that the core dlopens from its own folder; a build with every backend then loads on a machine
# with only one vendor's runtime.  Modules carry the core's VERSION and SOVERSION and export
# the library version they were built with, which the core checks before using them.
#
# Static build (POLYATTN_STATIC=ON or BUILD_SHARED_LIBS=OFF): each backend is an OBJECT
# library whose objects go into libpolyattn.a, with its vendor libraries as link dependencies
# of polyattn; the core registers it from a table of entry points (core/registry.c).
#
#   add_library(polyattn_<name> ${POLYATTN_MODULE_LIBRARY_TYPE} <sources>...)
#   ... target_link_libraries(polyattn_<name> PRIVATE polyattn_internal <vendor libs>) ...
#   polyattn_backend_module(polyattn_<name>)     # after its link libraries are set

if(POLYATTN_STATIC OR NOT BUILD_SHARED_LIBS)
  set(POLYATTN_LIBRARY_TYPE STATIC)
  set(POLYATTN_MODULE_LIBRARY_TYPE OBJECT)
else()
  set(POLYATTN_LIBRARY_TYPE SHARED)
  set(POLYATTN_MODULE_LIBRARY_TYPE SHARED)
endif()

set(POLYATTN_MODULE_VERSION_SOURCE "${PROJECT_BINARY_DIR}/generated/polyattn_module_version.c")
configure_file("${CMAKE_CURRENT_LIST_DIR}/polyattn_module_version.c.in"
               "${POLYATTN_MODULE_VERSION_SOURCE}" @ONLY)

# Linker flags of the vendor libraries of the backends linked into a static libpolyattn, for
# polyattn.pc (resolved where the backends' imported targets are visible).
set_property(GLOBAL PROPERTY POLYATTN_STATIC_LINK_FLAGS "")
# Packages the installed polyattnConfig.cmake must find for those libraries.
set_property(GLOBAL PROPERTY POLYATTN_STATIC_PACKAGES "")

function(polyattn_backend_module target)
  string(REGEX REPLACE "^polyattn_" "" name "${target}")
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "SHARED_LIBRARY")
    target_sources(${target} PRIVATE "${POLYATTN_MODULE_VERSION_SOURCE}")
    set_target_properties(${target} PROPERTIES
      VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
    return()
  endif()
  if(NOT type STREQUAL "OBJECT_LIBRARY")
    message(FATAL_ERROR "polyattn_backend_module(${target}): a ${type}, not a module")
  endif()

  # One archive holds every backend: each entry point gets its own name.
  target_compile_definitions(${target} PRIVATE
    polyattn_backend_entry=pa_${name}_backend_entry)
  target_sources(polyattn PRIVATE $<TARGET_OBJECTS:${target}>)
  # Device code is compiled whole (no device link step), so the archive and the programs that
  # link it stay C: a C or C++ linker (plus libstdc++ for CUDA host code) is enough.
  set_target_properties(polyattn PROPERTIES LINKER_LANGUAGE C CUDA_ARCHITECTURES OFF)
  # Objects the backend links from other object libraries (e.g. the sm_90a kernels).
  get_target_property(sources ${target} SOURCES)
  set(libs "")
  foreach(src IN LISTS sources)
    if(src MATCHES "^\\$<TARGET_OBJECTS:([^>]+)>$")
      target_sources(polyattn PRIVATE "${src}")
    elseif(src MATCHES "\\.(cu|cpp|cc|cxx)$")
      set(libs stdc++) # host code of a C++ compiler, linked by a C linker
    endif()
  endforeach()
  # Its vendor libraries become link dependencies of libpolyattn.a.
  get_target_property(target_libs ${target} LINK_LIBRARIES)
  list(APPEND libs ${target_libs})
  foreach(lib IN LISTS libs)
    if(lib STREQUAL "polyattn_internal" OR lib STREQUAL "polyattn" OR NOT lib)
      continue()
    endif()
    if(TARGET ${lib})
      get_target_property(imported ${lib} IMPORTED)
      get_target_property(lib_type ${lib} TYPE)
      if(lib MATCHES "^([A-Za-z0-9_]+)::")
        # A package's namespaced target: the installed config file finds that package.
        set(package "${CMAKE_MATCH_1}")
        if(package STREQUAL "CUDA")
          set(package CUDAToolkit)
        endif()
        set_property(GLOBAL APPEND PROPERTY POLYATTN_STATIC_PACKAGES ${package})
      elseif(imported AND NOT lib_type STREQUAL "INTERFACE_LIBRARY")
        # Any other imported library (found by this project, or a package target a consumer
        # would have to find again): link its file.
        polyattn_imported_location(location ${lib})
        if(location)
          set(lib "${location}")
        endif()
      endif()
    endif()
    target_link_libraries(polyattn PRIVATE ${lib})
    polyattn_pkgconfig_flags(flags ${lib})
    set_property(GLOBAL APPEND PROPERTY POLYATTN_STATIC_LINK_FLAGS ${flags})
  endforeach()
endfunction()

# polyattn_imported_location(<out> <target>): the file of an imported library, whichever
# configuration it was imported for.
function(polyattn_imported_location out target)
  get_target_property(location ${target} IMPORTED_LOCATION)
  if(NOT location)
    get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
    foreach(config IN LISTS configs)
      get_target_property(location ${target} IMPORTED_LOCATION_${config})
      if(location)
        break()
      endif()
    endforeach()
  endif()
  set(${out} "${location}" PARENT_SCOPE)
endfunction()

# polyattn_pkgconfig_flags(<out> <items>...): linker flags of libraries given as CMake link
# items (plain names, files, imported targets and their own dependencies).
function(polyattn_pkgconfig_flags out)
  set(flags "")
  foreach(item IN LISTS ARGN)
    if(item MATCHES "^\\$<LINK_ONLY:(.*)>$")
      set(item "${CMAKE_MATCH_1}")
    endif()
    if(item MATCHES "^(::@|\\$<)" OR item STREQUAL "")
      continue()
    elseif(item STREQUAL "Threads::Threads")
      list(APPEND flags "-pthread")
    elseif(TARGET ${item})
      get_target_property(type ${item} TYPE)
      if(NOT type STREQUAL "INTERFACE_LIBRARY")
        polyattn_imported_location(location ${item})
        if(location)
          polyattn_pkgconfig_flags(sub "${location}")
          list(APPEND flags ${sub})
        endif()
      endif()
      get_target_property(deps ${item} INTERFACE_LINK_LIBRARIES)
      if(deps)
        polyattn_pkgconfig_flags(sub ${deps})
        list(APPEND flags ${sub})
      endif()
    elseif(IS_ABSOLUTE "${item}")
      # /dir/libname.so or .a -> -L/dir -lname (a static archive by its path).
      get_filename_component(dir "${item}" DIRECTORY)
      get_filename_component(file "${item}" NAME)
      if(file MATCHES "^lib(.+)\\.so(\\.[0-9.]+)?$")
        if(NOT dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
          list(APPEND flags "-L${dir}")
        endif()
        list(APPEND flags "-l${CMAKE_MATCH_1}")
      else()
        list(APPEND flags "${item}")
      endif()
    elseif(item MATCHES "^-")
      list(APPEND flags "${item}")
    else()
      list(APPEND flags "-l${item}")
    endif()
  endforeach()
  set(${out} ${flags} PARENT_SCOPE)
endfunction()
