# Installation of remalloc: the header, libremalloc.so (with its soname
# links) and libremalloc.a, a CMake package (find_package(remalloc) gives
# remalloc::remalloc and remalloc::remalloc_static), a pkg-config file and
# the remalloc-run launcher. Included by the top-level CMakeLists.txt.
#
# Everything installed is relocatable: the package config, the .pc file and
# the launcher find the rest relative to where they are, so
# `cmake --install build --prefix /anywhere` and DESTDIR staging both work.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(REMALLOC_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/remalloc"
    CACHE STRING "Where the CMake package of remalloc is installed (relative to the prefix)")
mark_as_advanced(REMALLOC_CMAKE_DIR)

install(TARGETS remalloc remalloc_static
  EXPORT remallocTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/include/remalloc/remalloc.h"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/remalloc")

# CMake package.
install(EXPORT remallocTargets
  NAMESPACE remalloc::
  FILE remallocTargets.cmake
  DESTINATION "${REMALLOC_CMAKE_DIR}")
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/remallocConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/remallocConfig.cmake"
  INSTALL_DESTINATION "${REMALLOC_CMAKE_DIR}"
  PATH_VARS CMAKE_INSTALL_BINDIR CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
# 0.x: minor versions may break compatibility.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/remallocConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/remallocConfig.cmake"
  "${PROJECT_BINARY_DIR}/remallocConfigVersion.cmake"
  DESTINATION "${REMALLOC_CMAKE_DIR}")

# The path of to_dir relative to from_dir (both relative to the prefix), or
# the absolute path of to_dir when either was configured as absolute.
function(_remalloc_rel_path out from_dir to_dir)
  if(IS_ABSOLUTE "${to_dir}")
    set(${out} "${to_dir}" PARENT_SCOPE)
  elseif(IS_ABSOLUTE "${from_dir}")
    set(${out} "${CMAKE_INSTALL_PREFIX}/${to_dir}" PARENT_SCOPE)
  else()
    file(RELATIVE_PATH rel "/__prefix__/${from_dir}" "/__prefix__/${to_dir}")
    if(rel STREQUAL "")
      set(rel ".")
    endif()
    set(${out} "${rel}" PARENT_SCOPE)
  endif()
endfunction()

# pkg-config: prefix relative to the .pc file (${pcfiledir}).
set(REMALLOC_PC_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(REMALLOC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  _remalloc_rel_path(_rel "${REMALLOC_PC_DIR}" ".")
  set(REMALLOC_PC_PREFIX "\${pcfiledir}/${_rel}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(REMALLOC_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(REMALLOC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(REMALLOC_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(REMALLOC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/remalloc.pc.in" "${PROJECT_BINARY_DIR}/remalloc.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/remalloc.pc" DESTINATION "${REMALLOC_PC_DIR}")

# remalloc-run: finds the library relative to itself, falling back to the
# configured absolute path.
get_target_property(_remalloc_soversion remalloc SOVERSION)
if(_remalloc_soversion)
  set(REMALLOC_RUN_LIBNAME "libremalloc.so.${_remalloc_soversion}")
else()
  set(REMALLOC_RUN_LIBNAME "libremalloc.so")
endif()
_remalloc_rel_path(REMALLOC_RUN_LIBDIR_REL "${CMAKE_INSTALL_BINDIR}" "${CMAKE_INSTALL_LIBDIR}")
set(REMALLOC_RUN_LIBDIR_ABS "${CMAKE_INSTALL_FULL_LIBDIR}")
configure_file("${PROJECT_SOURCE_DIR}/preload/remalloc-run.in" "${PROJECT_BINARY_DIR}/remalloc-run" @ONLY)
install(PROGRAMS "${PROJECT_BINARY_DIR}/remalloc-run" DESTINATION "${CMAKE_INSTALL_BINDIR}")
